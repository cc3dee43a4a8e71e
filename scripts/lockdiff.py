"""Lists the installed distributions whose versions differ from a lock file's pins.

    python scripts/lockdiff.py requirements/test.txt

Run by `ELLIPTIO_DEPS=newest bash scripts/setup.sh` after it resolved the newest versions,
so that a failure of that test pass says which packages moved since the lock. Always exits
0: moving is what that pass is for.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """{canonical name: version} of every `name==version` line of a pip-compile lock."""
    pins = {}
    for line in path.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        m = PIN.match(text)
        if not m:  # e.g. "name @ file:///..." : a lock holds exact versions only
            raise ValueError(f"{path}: not a name==version pin: {text!r}")
        pins[canonical(m.group(1))] = m.group(2)
    return pins


def installed() -> dict[str, str]:
    return {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()}


def main(argv: list[str]) -> int:
    lock = read_lock(Path(argv[1]))
    here = installed()
    here.pop("elliptio", None)
    moved = [(n, lock[n], here[n]) for n in sorted(lock) if n in here and here[n] != lock[n]]
    added = sorted(set(here) - set(lock) - {"pip", "setuptools", "wheel"})
    gone = sorted(set(lock) - set(here))
    print(f"lockdiff: against {argv[1]}: {len(moved)} moved, {len(added)} new, "
          f"{len(gone)} no longer needed")
    for n, old, new in moved:
        print(f"  {n:30} {old} -> {new}")
    for n in added:
        print(f"  {n:30} (new) {here[n]}")
    for n in gone:
        print(f"  {n:30} {lock[n]} -> (not installed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
