"""The environment the project runs in: the committed lock agrees with pyproject.toml, the
suite runs from the environment scripts/setup.sh made (not the machine's preinstalled
packages), that set-up works from a Python with nothing in its site-packages, and an
installation without the fuse extra says what to install."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from lockdiff import read_lock  # noqa: E402

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TEST_LOCK = read_lock(ROOT / "requirements/test.txt")
RUN_LOCK = read_lock(ROOT / "requirements/run.txt")
LOWEST_LOCK = read_lock(ROOT / "requirements/lowest.txt")
#: the pip cache of whoever runs the suite (the tests' own HOME is a temp directory)
PIP_CACHE = os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache/pip")


def requirements(*extras: str) -> list[Requirement]:
    """pyproject's requirements of the core and *extras*, self-references expanded."""
    project = PYPROJECT["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    todo, done = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in done:
            continue
        done.add(extra)
        for r in map(Requirement, project["optional-dependencies"][extra]):
            if canonicalize_name(r.name) == "elliptio":
                todo += sorted(r.extras)
            else:
                reqs.append(r)
    return reqs


@pytest.mark.parametrize("lock, extras", [(TEST_LOCK, ("test",)), (RUN_LOCK, ("fuse", "web"))],
                         ids=["test.txt", "run.txt"])
def test_the_lock_agrees_with_pyproject(lock: dict[str, str], extras: tuple[str, ...]):
    """Every requirement of pyproject (core and extras) is pinned in the lock at a version
    its range admits. Fails after a dependency changes until `bash scripts/lock.sh` ran."""
    assert lock, "no pins read from the lock"
    for req in requirements(*extras):
        name = canonicalize_name(req.name)
        assert name in lock, f"{req} is not in the lock: run bash scripts/lock.sh"
        assert req.specifier.contains(lock[name], prereleases=True), \
            f"the lock pins {name}=={lock[name]}, outside pyproject's {req}: run scripts/lock.sh"
    assert "elliptio" not in lock  # the project itself is installed from the tree


def test_the_lowest_lock_holds_every_lower_bound():
    """requirements/lowest.txt (CI's lower-bounds pass) pins every direct requirement at
    exactly the lower bound pyproject states, so each bound is one the suite passed on."""
    from packaging.version import Version

    for req in requirements("test"):
        name = canonicalize_name(req.name)
        lower = [s.version for s in req.specifier if s.operator == ">="]
        assert lower, f"{req}: every dependency states the lowest version it was tested with"
        assert name in LOWEST_LOCK, f"{req} is not in requirements/lowest.txt: scripts/lock.sh"
        # a post-release (mongomock 4.2.0.post1) is the release of its bound
        assert Version(Version(LOWEST_LOCK[name]).base_version) == Version(lower[0]), \
            f"requirements/lowest.txt pins {name}=={LOWEST_LOCK[name]}, not {req}'s bound"


def test_the_locks_agree_with_each_other():
    """The demo's lock is the test lock's subset (scripts/lock.sh constrains it), so the
    environment made for the tests serves the demo unchanged."""
    assert set(RUN_LOCK) <= set(TEST_LOCK)
    assert {n: v for n, v in RUN_LOCK.items() if TEST_LOCK[n] != v} == {}


def test_the_suite_runs_in_the_projects_environment():
    """Not the machine's interpreter with its preinstalled packages: a venv without system
    site-packages, holding exactly the lock (or, in CI's newest pass, versions within
    pyproject's ranges)."""
    assert sys.prefix != sys.base_prefix, "the suite runs outside a virtual environment"
    cfg = (Path(sys.prefix) / "pyvenv.cfg").read_text()
    assert re.search(r"include-system-site-packages\s*=\s*false", cfg), cfg
    assert Path(__import__("elliptio").__file__).resolve().parent == ROOT / "elliptio"
    installed = {canonicalize_name(d.metadata["Name"]): d.version
                 for d in metadata.distributions()}
    marker = Path(sys.prefix) / ".elliptio-lock"
    if marker.exists():  # made by setup.sh from a lock: exactly that lock
        lock = read_lock(ROOT / marker.read_text().split()[0])
        moved = {n: (v, installed.get(n)) for n, v in lock.items() if installed.get(n) != v}
        assert moved == {}, f"installed versions differ from the lock: {moved}"
    else:  # ELLIPTIO_DEPS=newest: whatever pip chose, within pyproject's ranges
        for req in requirements("test"):
            v = installed.get(canonicalize_name(req.name))
            assert v is not None and req.specifier.contains(v, prereleases=True), (req, v)


def _bare_python(tmp_path: Path) -> Path:
    """A Python whose site-packages holds nothing at all (no pip either): a venv of the
    base interpreter made --without-pip."""
    bare = tmp_path / "bare"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(bare)],
                   check=True, timeout=120)
    py = bare / "bin" / "python"
    assert subprocess.run([str(py), "-c", "import trio"], capture_output=True).returncode != 0
    return py


def test_setup_works_from_a_python_with_empty_site_packages(tmp_path: Path):
    """The demo's set-up, from a Python that has nothing installed, builds an environment
    of its own from the lock (the image's preinstalled trio 0.22 never matters), and a
    second run finds it up to date."""
    py = _bare_python(tmp_path)
    venv = tmp_path / "venv"
    env = {**os.environ, "PYTHON": str(py), "ELLIPTIO_VENV": str(venv),
           "PIP_CACHE_DIR": PIP_CACHE}
    env.pop("ELLIPTIO_DEPS", None)
    run = subprocess.run(["bash", "scripts/setup.sh", "demo"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"making the environment {venv}" in run.stdout
    vpy = venv / "bin" / "python"
    probe = ("import importlib.metadata as m, trio, pyfuse3, starlette, elliptio, sys;"
             "print(m.version('trio'), m.version('starlette'), m.version('pyfuse3'),"
             " elliptio.__file__, sys.flags.no_site)")
    got = subprocess.run([str(vpy), "-c", probe], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    trio_v, starlette_v, pyfuse3_v, where, _ = got.stdout.split()
    assert (trio_v, starlette_v, pyfuse3_v) == (RUN_LOCK["trio"], RUN_LOCK["starlette"],
                                                RUN_LOCK["pyfuse3"])
    assert Path(where).resolve() == ROOT / "elliptio" / "__init__.py"
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    for cmd in ("eio", "elliptiofs"):
        assert (venv / "bin" / cmd).exists()
    again = subprocess.run(["bash", "scripts/setup.sh", "demo"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "is up to date with requirements/run.txt" in again.stdout
    bad = subprocess.run(["bash", "scripts/setup.sh", "demo"], cwd=ROOT,
                         env={**env, "PYTHON": "/no/such/python3"}, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "needs Python 3.11 to 3.13" in bad.stderr, bad.stderr


def test_elliptiofs_without_the_fuse_extra_says_what_to_install(tmp_path: Path):
    """`pip install elliptio` (no extras) into a clean venv: `eio` works, `elliptiofs`
    prints one line naming the extra and exits with the usage code, no traceback."""
    venv = tmp_path / "nofuse"
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {**os.environ, "PIP_CACHE_DIR": PIP_CACHE, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-c", str(ROOT / "requirements/test.txt"), "-e", str(ROOT)],
                   check=True, env=env, timeout=600, capture_output=True)
    has = subprocess.run([str(venv / "bin" / "python"), "-c", "import trio"],
                         capture_output=True)
    assert has.returncode != 0  # really without the extra
    res = subprocess.run([str(venv / "bin" / "elliptiofs"), str(tmp_path / "mnt")],
                         capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
    assert "pip install 'elliptio[fuse]'" in res.stderr
    ok = subprocess.run([str(venv / "bin" / "eio"), "--help"], capture_output=True,
                        text=True, timeout=60, env=env)
    assert ok.returncode == 0 and "save" in ok.stdout, ok.stderr
