"""``eio reproduce`` for real (issue 17): a saving environment built from wheels, a save
from a script inside a git repository with uncommitted changes, and a reproduce into an
empty directory that recreates the venv and the source tree.

How the saving environment is made, real and offline: a fresh venv (``python -m venv
--without-pip``, then the project's own pip with ``--python`` installs into it) holding
exactly four distributions, each installed by pip from a wheel in one directory W:

- ``tinypkg-eio`` 1.2.3, a tiny package whose wheel the test writes (a wheel is a zip
  with METADATA, WHEEL and RECORD; the project venv has no ``wheel`` package for
  setuptools' bdist_wheel, and building by hand needs none);
- ``elliptio`` itself, a wheel of this checkout's ``elliptio/`` package;
- PyYAML and platformdirs, all a local save imports, repacked as wheels from the files
  the project venv has installed (their RECORD), so no network is needed.

The artifact's pip freeze then lists those four, and the reproduce installs them with
``--no-index --find-links W``: nothing comes from the registry, and the test takes
seconds. Nothing of the saving script runs during the reproduce (it prints a marker file
if it ever runs; the test checks there is none in the reproduced tree).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from elliptio.ids import new_id
from elliptio.reproduce import requirement_lines
from elliptio.version import __version__

ROOT = Path(__file__).resolve().parent.parent
TINY, TINY_VERSION = "tinypkg-eio", "1.2.3"
GIT = ["git", "-c", "user.name=T", "-c", "user.email=t@example.org",
       "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def write_wheel(out: Path, name: str, version: str, files: dict[str, bytes], *,
                tag: str = "py3-none-any", wheel_meta: bytes | None = None,
                metadata: bytes | None = None, extra_info: dict[str, bytes] | None = None
                ) -> Path:
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    contents = dict(files)
    contents[f"{info}/METADATA"] = metadata or (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode())
    contents[f"{info}/WHEEL"] = wheel_meta or (
        f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n".encode())
    for k, v in (extra_info or {}).items():
        contents[f"{info}/{k}"] = v
    record = [_record_line(k, v) for k, v in contents.items()] + [f"{info}/RECORD,,"]
    path = out / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as z:
        for k, v in contents.items():
            z.writestr(k, v)
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


def repack_installed(out: Path, name: str) -> Path:
    """A wheel of an installed distribution, made from the files its RECORD lists."""
    dist = importlib.metadata.distribution(name)
    skip = {"INSTALLER", "REQUESTED", "RECORD", "direct_url.json"}
    files, meta = {}, {}
    for f in dist.files or []:
        parts = Path(str(f)).parts
        if parts[0] == ".." or "__pycache__" in parts:
            continue
        data = Path(str(f.locate())).read_bytes()
        if parts[0].endswith(".dist-info"):
            if parts[-1] not in skip:
                meta[parts[-1]] = data
            continue
        files[str(f)] = data
    wheel = meta.pop("WHEEL")
    tag = next(ln.split(":", 1)[1].strip() for ln in wheel.decode().splitlines()
               if ln.startswith("Tag:"))
    return write_wheel(out, dist.metadata["Name"], dist.version, files, tag=tag,
                       wheel_meta=wheel, metadata=meta.pop("METADATA"), extra_info=meta)


def run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check and res.returncode:
        raise AssertionError(f"{cmd} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res


def tracked_tree(repo: Path) -> dict[str, bytes]:
    """The working tree's tracked files that exist, by path, with their bytes (a staged
    new file counts; a tracked file deleted from the working tree does not)."""
    names = run(["git", "ls-files", "-z"], cwd=repo).stdout.split("\0")
    return {n: (repo / n).read_bytes() for n in names if n and (repo / n).is_file()}


def files_of(tree: Path) -> dict[str, bytes]:
    return {str(p.relative_to(tree)): p.read_bytes() for p in tree.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(tree).parts}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("repro")
    wheels = base / "wheels"
    wheels.mkdir()
    write_wheel(wheels, TINY, TINY_VERSION, {
        "tinypkg_eio.py": f"VERSION = {TINY_VERSION!r}\n".encode()})
    pkg = {str(Path("elliptio") / p.relative_to(ROOT / "elliptio")): p.read_bytes()
           for p in (ROOT / "elliptio").rglob("*")
           if p.is_file() and "__pycache__" not in p.parts}
    write_wheel(wheels, "elliptio", __version__, pkg)
    repack_installed(wheels, "PyYAML")
    repack_installed(wheels, "platformdirs")
    venv = base / "save-venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    vpy = venv / "bin/python"
    run([sys.executable, "-m", "pip", "--python", str(vpy), "install", "--quiet",
         "--disable-pip-version-check", "--no-index", "--no-deps", "--find-links",
         str(wheels), f"{TINY}=={TINY_VERSION}", "elliptio", "PyYAML", "platformdirs"])
    # pip sees only what a test passes: no configured index or find-links of the machine
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env = {**env, "PIP_CONFIG_FILE": os.devnull, "ELLIPTIO_STORE": f"file://{base}/store",
           "ELLIPTIO_CATALOGUE": f"sqlite:///{base}/catalogue.sqlite",
           "ELLIPTIO_USER": "andy", "PYTHONDONTWRITEBYTECODE": "1"}
    return {"base": base, "wheels": wheels, "vpy": vpy, "env": env}


SAVE_SCRIPT = """\
import pathlib, sys
import elliptio as eio
import tinypkg_eio
a = eio.save(["out.txt"], info={"type": "result", "tiny": tinypkg_eio.VERSION})
pathlib.Path("RAN-USER-CODE").write_text("the saving script ran here")
print(a.id)
"""


def make_repo(path: Path, remote: Path | None = None) -> None:
    """A repository with a commit, then uncommitted changes of every kind: a modified
    tracked file, a staged new file, a deleted tracked file, untracked files."""
    path.mkdir()
    (path / "save.py").write_text(SAVE_SCRIPT)
    (path / "data.txt").write_text("one\ntwo\nthree\n")
    (path / "gone.txt").write_text("deleted after the commit\n")
    (path / "sub").mkdir()
    (path / "sub/conf.ini").write_text("[a]\nx = 1\n")
    run([*GIT, "init", "-q"], cwd=path)
    run([*GIT, "add", "."], cwd=path)
    run([*GIT, "commit", "-q", "-m", "first"], cwd=path)
    if remote is not None:
        run([*GIT, "clone", "-q", "--bare", str(path), str(remote)])
        run([*GIT, "remote", "add", "origin", str(remote)], cwd=path)
    (path / "data.txt").write_text("one\nTWO (changed)\nthree\nfour\n")
    (path / "staged.txt").write_text("staged, never committed\n")
    run([*GIT, "add", "staged.txt"], cwd=path)
    (path / "gone.txt").unlink()
    (path / "out.txt").write_text("the result\n")  # untracked, saved into the artifact
    (path / "notes.txt").write_text("untracked, not saved\n")


def save_from(world: dict, repo: Path, script: str = "save.py") -> str:
    res = run([str(world["vpy"]), script], cwd=repo, env=world["env"])
    (repo / "RAN-USER-CODE").unlink()
    return res.stdout.strip().splitlines()[-1]


def eio(world: dict, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "elliptio", *args], env=world["env"], check=check)


@pytest.fixture(scope="module")
def saved(world: dict) -> dict:
    repo = world["base"] / "work"
    make_repo(repo, remote=world["base"] / "remote.git")
    at_save = tracked_tree(repo)
    aid = save_from(world, repo)
    return {"id": aid, "repo": repo, "tree": at_save}


def test_reproduce_recreates_venv_and_source(world: dict, saved: dict, tmp_path: Path):
    dest = tmp_path / "again"
    dest.mkdir()
    res = eio(world, "reproduce", saved["id"], str(dest), "--no-index",
              "--find-links", str(world["wheels"]))
    assert res.returncode == 0, res.stdout + res.stderr
    # the venv: the tiny package at the recorded version, the recorded Python minor
    vpy = dest / ".venv/bin/python"
    got = run([str(vpy), "-c", "import importlib.metadata as m, sys; "
               f"print(m.version({TINY!r}), '%d.%d' % sys.version_info[:2])"]).stdout.split()
    want_py = run([str(world["vpy"]), "-c", "import sys; print('%d.%d' % "
                   "sys.version_info[:2])"]).stdout.strip()
    assert got == [TINY_VERSION, want_py]
    reqs = (dest / "requirements.txt").read_text().splitlines()
    assert f"{TINY}=={TINY_VERSION}" in reqs and f"elliptio=={__version__}" in reqs
    # src: the tracked files of the working tree at save time, byte for byte, and no other
    assert files_of(dest / "src") == saved["tree"]
    assert not (dest / "src/gone.txt").exists() and not (dest / "src/notes.txt").exists()
    head = run(["git", "rev-parse", "HEAD"], cwd=dest / "src").stdout.strip()
    assert head == run(["git", "rev-parse", "HEAD"], cwd=saved["repo"]).stdout.strip()
    # untracked at save time and not in the artifact: notes.txt (out.txt was saved)
    assert (dest / "untracked.txt").read_text() == "notes.txt\n"
    # the summary ends in the recorded command line and working directory
    lines = res.stdout.strip().splitlines()
    assert lines[-2:] == ["recorded command line: python save.py",
                          f"recorded working directory: {saved['repo']}"]
    assert f"  cd {dest / 'src'}" in lines
    assert not list(dest.rglob("RAN-USER-CODE"))  # nothing of the user's code ran
    assert "-- INCOMPLETE" not in res.stdout


def test_dry_run_changes_nothing(world: dict, saved: dict, tmp_path: Path):
    dest = tmp_path / "plan"
    res = eio(world, "reproduce", saved["id"], str(dest), "--dry-run", "--no-index",
              "--find-links", str(world["wheels"]))
    assert res.returncode == 0, res.stderr
    assert not dest.exists()
    out = res.stdout
    assert f"write {dest / 'requirements.txt'} (4 requirement(s))" in out
    assert f"pip install -r requirements.txt --find-links={world['wheels']} --no-index" in out
    assert f"clone {world['base'] / 'remote.git'} into {dest / 'src'}" in out
    assert "apply the recorded diff" in out and "untracked at save time: notes.txt" in out
    assert out.rstrip().endswith("(dry run: nothing was changed)")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert eio(world, "reproduce", saved["id"], str(empty), "--dry-run").returncode == 0
    assert list(empty.iterdir()) == []


def test_dir_not_empty_refused_and_force_keeps(world: dict, saved: dict, tmp_path: Path):
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "requirements.txt").write_text("mine\n")
    (dest / ".venv").mkdir()
    (dest / ".venv/keep").write_text("my venv\n")
    res = eio(world, "reproduce", saved["id"], str(dest), "--repo", str(saved["repo"]))
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "is not empty" in res.stderr
    assert sorted(p.name for p in dest.iterdir()) == [".venv", "requirements.txt"]
    res = eio(world, "reproduce", saved["id"], str(dest), "--force",
              "--repo", str(saved["repo"]))
    assert res.returncode == 1, res.stdout + res.stderr  # incomplete: two parts kept
    assert (dest / "requirements.txt").read_text() == "mine\n"
    assert (dest / ".venv/keep").read_text() == "my venv\n"
    assert f"MISSING requirements: {dest / 'requirements.txt'} exists: kept" in res.stdout
    assert f"MISSING venv: {dest / '.venv'} exists: kept" in res.stdout
    assert files_of(dest / "src") == saved["tree"]  # the rest is done, from --repo


def test_diff_that_does_not_apply_keeps_checkout(world: dict, tmp_path: Path):
    # A credential beside a changed line is redacted in the recorded diff: its context no
    # longer matches the commit, so that hunk is rejected; the other file's hunk applies.
    repo = tmp_path / "secret"
    repo.mkdir()
    (repo / "save.py").write_text(SAVE_SCRIPT)
    (repo / "conf.py").write_text('user = "a"\npassword = "hunter2hunter2"\nport = 1\n')
    (repo / "other.txt").write_text("x\n")
    run([*GIT, "init", "-q"], cwd=repo)
    run([*GIT, "add", "."], cwd=repo)
    run([*GIT, "commit", "-q", "-m", "c"], cwd=repo)
    (repo / "conf.py").write_text('user = "a"\npassword = "hunter2hunter2"\nport = 2\n')
    (repo / "other.txt").write_text("y\n")
    (repo / "out.txt").write_text("r\n")
    aid = save_from(world, repo)
    dest = tmp_path / "d"
    (dest / ".venv").mkdir(parents=True)  # kept: this test is about the source (no pip)
    res = eio(world, "reproduce", aid, str(dest), "--repo", str(repo), "--force")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "MISSING diff: the recorded diff does not apply in full: rejected conf.py " \
           "(1 hunk(s), see conf.py.rej)" in res.stdout
    assert (dest / "src/conf.py").read_text().endswith("port = 1\n")  # checkout kept
    assert (dest / "src/conf.py.rej").is_file()
    assert (dest / "src/other.txt").read_text() == "y\n"  # the hunk that applies, applied
    assert "done    diff: " in res.stdout and "done    untracked: " in res.stdout


def test_no_git_and_no_network_do_the_rest(world: dict, tmp_path: Path):
    """Saved outside any repository, reproduced where the index cannot be reached: both
    parts are named (pip's own error in one line), and the rest is done."""
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "save.py").write_text(SAVE_SCRIPT)
    (plain / "out.txt").write_text("r\n")
    aid = save_from(world, plain)
    dest = tmp_path / "d"
    res = eio(world, "reproduce", aid, str(dest), "--index-url", "http://127.0.0.1:9/simple",
              "--pip=--retries=1", "--pip=--timeout=1")
    assert res.returncode == 1
    missing = [ln for ln in res.stdout.splitlines() if ln.startswith("  MISSING")]
    assert len(missing) == 2
    assert missing[0].startswith("  MISSING install: pip could not reach the package index "
                                 "(no network?): ERROR: ")
    assert missing[1] == ("  MISSING src: the artifact was saved without git (not inside a "
                          "git repository)")
    assert f"  done    requirements: {dest / 'requirements.txt'}: 4 requirement(s)" \
        in res.stdout
    assert (dest / ".venv/bin/python").exists() and "  done    venv: " in res.stdout
    assert not (dest / "src").exists() and not (dest / "untracked.txt").exists()
    assert res.stdout.strip().splitlines()[-1] == f"recorded working directory: {plain}"


def test_without_pip_freeze_says_so(world: dict, tmp_path: Path):
    from elliptio import Lake, Settings
    from elliptio.inputs import resolve_inputs

    (tmp_path / "f.txt").write_text("x\n")
    env = world["env"]
    lake = Lake(Settings.load(store=env["ELLIPTIO_STORE"],
                              catalogue=env["ELLIPTIO_CATALOGUE"], user="andy"))
    try:
        a = lake.save_entries(resolve_inputs([str(tmp_path / "f.txt")]), info={},
                              based_on=[], writer={"argv": ["cp", "f.txt"], "uid": 0,
                                                   "login": "andy", "via": "test"})
    finally:
        lake.close()
    res = eio(world, "reproduce", a.id, str(tmp_path / "d"), "--dry-run")
    assert res.returncode == 0
    assert "requirements: NOT DONE: the artifact was saved without pip freeze" in res.stdout
    assert "install: NOT DONE: no requirements to install" in res.stdout
    assert "src: NOT DONE: the artifact was saved without git" in res.stdout
    assert res.stdout.count("recorded command line: cp f.txt") == 1


def test_unknown_id(world: dict, tmp_path: Path):
    res = eio(world, "reproduce", new_id(), str(tmp_path / "d"))
    assert res.returncode == 3
    assert res.stderr.startswith("eio: error: no artifact ") and res.stderr.count("\n") == 1
    assert not (tmp_path / "d").exists()


def test_requirement_lines(tmp_path: Path):
    wheel = tmp_path / "local-1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    freeze = "\n".join([
        "click==8.1.7",
        "mine==0.3  # editable",
        f"local @ file://{wheel}",
        "lost @ file:///nowhere/lost-1.0.tar.gz",
        "vcs @ git+https://example.org/r.git@0123abcd",
        f"-e git+file://{tmp_path}@0123abcd#egg=here",
        "-e /nowhere/src",
        # as elliptio.environment writes them: the version after the reference
        f"-e file://{tmp_path}  # editable here2==0.1",
        "-e file:///nowhere/proj  # editable proj==2.0",
        "priv @ git+https://***@example.org/p.git@89ab  # priv==1.0",
        "odd==3.0  # direct_url.json unreadable",
        "# a comment",
        "",
    ])
    keep, excluded, local = requirement_lines(freeze)
    assert keep == ["click==8.1.7", f"local @ file://{wheel}",
                    "vcs @ git+https://example.org/r.git@0123abcd",
                    f"-e git+file://{tmp_path}@0123abcd#egg=here", f"-e file://{tmp_path}",
                    "priv @ git+https://example.org/p.git@89ab", "odd==3.0"]
    assert [e for e, _ in excluded] == ["mine==0.3", "lost @ file:///nowhere/lost-1.0.tar.gz",
                                        "-e /nowhere/src", "-e file:///nowhere/proj"]
    assert "not recorded" in excluded[0][1] and "/nowhere/lost-1.0.tar.gz" in excluded[1][1]
    assert excluded[3][1] == ("installed from /nowhere/proj, which is not on this machine; "
                              "proj==2.0 may be on an index")
    assert local == [f"local @ file://{wheel}", f"-e git+file://{tmp_path}@0123abcd#egg=here",
                     f"-e file://{tmp_path}"]
