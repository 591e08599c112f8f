"""Dependency versions for scripts/test.sh.

    python scripts/deps.py lowest [EXTRA ...]   pins (name==lowest) of the runtime
                                                dependencies and of the given extras,
                                                read from pyproject.toml's ">=" bounds
    python scripts/deps.py compare PYTHON FILE  what differs between PYTHON's installed
                                                packages and the pins in FILE
    python scripts/deps.py freeze [PYTHON]      write .ci/tested-versions.txt from
                                                PYTHON's packages (after a green run)
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10: pip carries a copy
    from pip._vendor import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
TESTED = ROOT / ".ci" / "tested-versions.txt"
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lowest(extras: list[str]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    pins = []
    for req in reqs:
        m = _REQ.match(req.split(";")[0])
        if m is None:
            raise SystemExit(f"cannot read requirement {req!r}")
        name, spec = m.groups()
        bound = re.search(r"(?:>=|==|~=)\s*([^,\s]+)", spec)
        if bound is None:
            raise SystemExit(f"{req!r} declares no lower bound: add one (>=)")
        pins.append(f"{name}=={bound.group(1)}")
    return pins


def installed(python: str) -> dict[str, str]:
    out = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze", "--exclude-editable",
         "--disable-pip-version-check"],
        check=True, capture_output=True, text=True,
    ).stdout
    return _pins(out)


def _pins(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and not name.startswith("#"):
            pins[_norm(name)] = version
    return pins


def compare(python: str, path: str) -> list[str]:
    now = installed(python)
    tested = _pins(Path(path).read_text()) if Path(path).exists() else {}
    lines = []
    for name in sorted(set(now) | set(tested)):
        a, b = tested.get(name), now.get(name)
        if a != b:
            lines.append(f"  {name}: tested {a or '(absent)'} -> now {b or '(absent)'}")
    return lines


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    verb, args = argv[0], argv[1:]
    if verb == "lowest":
        print("\n".join(lowest(args)))
    elif verb == "compare":
        lines = compare(*args)
        if lines:
            print("Packages that differ from the last green run:")
            print("\n".join(lines))
    elif verb == "freeze":
        python = args[0] if args else str(ROOT / ".venv" / "bin" / "python")
        pins = installed(python)
        body = "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))
        TESTED.write_text(
            "# Versions of the last green run of scripts/test.sh (scripts/deps.py freeze).\n"
            + body
        )
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
