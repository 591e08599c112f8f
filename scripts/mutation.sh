#!/usr/bin/env bash
# Mutation testing of the core modules with mutmut: on demand, not part of CI.
#
#   bash scripts/mutation.sh                            # every module of [tool.mutmut]
#   bash scripts/mutation.sh "msgflux.models.stream*"   # only mutants whose name matches
#   .venv/bin/mutmut show NAME                          # the diff of one mutant
#   .venv/bin/mutmut browse                             # survivors, interactively
#
# mutmut changes one thing at a time in the source (a comparison, a constant, a
# return value...) and runs the tests that reach the changed function: a mutant
# that no test notices ("survived") is behaviour nothing pins down. Which modules
# are mutated and which tests judge them is in pyproject.toml [tool.mutmut]: the
# dialects, stream, tool_calls, cache, structured and the transport's sse, http11,
# retry and attempt, judged by their own fast test files without the llama.cpp
# server. Not every survivor is a gap: many are equivalent (a changed default that
# every caller overrides, a message's wording, a cache size).
#
# How long: about 4,600 mutants, 40-60 min with one worker on the shared 2-core
# machine (MUTATION_JOBS=2 on an idle one); a pattern for one module takes a few
# minutes (structured.py's _lower: 109 mutants in 1 min). Results stay in mutants/ (git-ignored):
# a second run re-tests only the functions that changed. Run it after changing one of
# those modules, look at the new survivors, and add a test for each real gap.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
[ -x .venv/bin/mutmut ] || \
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[mutation]"
.venv/bin/mutmut run --max-children "${MUTATION_JOBS:-1}" "$@" || true  # the summary tells
# Killed / total per module, and the survivors (mutmut's own listing).
.venv/bin/mutmut results --all true | .venv/bin/python -c '
import collections, re, sys
counts = collections.defaultdict(collections.Counter)
for line in sys.stdin:
    name, _, status = line.strip().rpartition(": ")
    if name:
        counts[re.split(r"\.x(?:_|\u01c1)", name)[0]][status] += 1
row = "%-40s %7s %6s %9s %9s %6s"
print(row % ("module", "killed", "total", "survived", "no tests", "other"))
for module, c in sorted(counts.items()):
    total = sum(c.values())
    other = total - c["killed"] - c["survived"] - c["no tests"]
    print(row % (module, c["killed"], total, c["survived"], c["no tests"], other))
'
