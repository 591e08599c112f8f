#!/usr/bin/env bash
# Sets up .venv (scripts/setup.sh), then lints and runs the whole test suite, which starts a
# real llama.cpp server (SmolLM2 through xllamacpp) and scripted servers on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests $( [ -d bench ] && echo bench )
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
