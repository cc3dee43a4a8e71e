"""The ``elliptiofs`` command's entry point (also ``python -m elliptiofs``).

It checks that the fuse extra is installed before importing anything that needs it, so
that an installation without it says what to install in one line (exit 2, the usage code
of :mod:`elliptiofs.cli`) instead of ending in an ImportError traceback.
"""

from __future__ import annotations

import sys

#: the one line printed when pyfuse3 or trio cannot be imported
MISSING_FUSE = ("elliptiofs: the mount needs the fuse extra ({what}): "
                "pip install 'elliptio[fuse]' (pyfuse3 builds against libfuse3: "
                "on Debian, apt-get install fuse3 libfuse3-dev pkg-config)")


def main(argv: list[str] | None = None) -> int:
    try:
        import pyfuse3  # noqa: F401
        import trio  # noqa: F401
    except ImportError as exc:
        print(MISSING_FUSE.format(what=exc), file=sys.stderr)
        return 2
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
