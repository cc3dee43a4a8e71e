"""The outbox, for real: real programs copy into ``outbox/`` of a mounted daemon, and the
saved artifacts are checked in the lake. Every mount is unmounted and must exit 0
(tests/fixtures/fuse.py); processes and users a test starts or creates it removes.

The metadata parsers are tested without a mount at the end.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from elliptio import Lake, Settings
from elliptio.errors import UsageError
from elliptiofs.outbox import sidecar_metadata, xattr_metadata
from tests.fixtures.fuse import notify_socket
from tests.fixtures.trees import tree_of

pytestmark = pytest.mark.fuse

QUIET = "0.4"
ROOT = pwd.getpwuid(os.getuid()).pw_name


def run(*cmd: str, cwd: Path | None = None, check: bool = True,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, cwd=cwd, text=True, capture_output=True, timeout=120, env=env)
    if check:
        assert res.returncode == 0, f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr}"
    return res


def wait_for(what: Callable[[], object], timeout: float = 15.0, message: str = "") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting: {message}"
        time.sleep(0.05)


def committed(path: Path, timeout: float = 15.0) -> str:
    """The artifact id once *path* in the outbox turned into its symlink."""
    wait_for(path.is_symlink, timeout, f"{path} was not committed")
    target = os.readlink(path)
    assert target.startswith("../") and "/artifacts/" in "/" + target
    return target.rsplit("/", 1)[1]


def xattr(path: Path, name: str) -> str | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False).decode()
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            return None
        raise


def err(fn: Callable[..., object], *args: object) -> int:
    try:
        fn(*args)
    except OSError as exc:
        return exc.errno or 0
    raise AssertionError(f"{getattr(fn, '__name__', fn)}{args} did not fail")


@pytest.fixture
def lake_env_quiet(store_env: dict[str, str]) -> dict[str, str]:
    return {**store_env, "ELLIPTIO_OUTBOX_QUIET": QUIET, "ELLIPTIO_OUTBOX_RETRY": "0.5"}


@pytest.fixture
def outbox_lake(store_env: dict[str, str]) -> Iterator[Lake]:
    lake = Lake(Settings.load())
    yield lake
    lake.close()


# -- real programs ---------------------------------------------------------------------------
def test_real_programs_copy_in_and_artifacts_appear(lake_env_quiet, mount_factory,
                                                    outbox_lake, tmp_path):
    m = mount_factory(lake_env_quiet)
    out = m.path / "outbox"
    src = tmp_path / "src"
    (src / "run42/sub").mkdir(parents=True)
    (src / "run42/empty/inner").mkdir(parents=True)  # empty directories are the tree too
    (src / "run42/void").mkdir()
    for i in range(3):
        (src / f"run42/f{i}.txt").write_text(f"file {i}\n")
    (src / "run42/sub/deep.bin").write_bytes(os.urandom(300_000))
    model = os.urandom(5_000_000)
    (src / "model.pth").write_bytes(model)

    run("cp", str(src / "model.pth"), str(out))
    run("cp", "-r", str(src / "run42"), str(out))
    run("rsync", "-a", f"{src / 'run42'}/", str(out / "rsynced"))
    run("rsync", "-a", str(src / "model.pth"), str(out / "model-rsync.pth"))
    tar = subprocess.run(f"tar c -C {src} run42 | tar x -C {out} --transform s/^run42/untarred/",
                         shell=True, capture_output=True, text=True, timeout=60)
    assert tar.returncode == 0, tar.stderr

    ids = {name: committed(out / name) for name in
           ("model.pth", "run42", "rsynced", "model-rsync.pth", "untarred")}
    assert os.readlink(out / "model.pth") == f"../artifacts/{ids['model.pth']}"
    a = outbox_lake.get(ids["model.pth"])
    assert a is not None and list(a.files) == ["model.pth"]
    assert a.files["model.pth"].read_bytes() == model
    # the owner is the writing uid, not the daemon's ELLIPTIO_USER (andy)
    assert m.env["ELLIPTIO_USER"] == "andy" and a.user == ROOT
    assert a.provenance["outbox"]["writers"][0].startswith("cp ")
    # the provenance describes the writer (cp, run by root), not the daemon: its packages
    # and git state are not known, so there are no such logs; the daemon is named as via
    prov = a.provenance
    assert prov["argv"][0] == "cp" and prov["uid"] == 0 and prov["login"] == ROOT
    assert prov["via"]["program"] == "elliptiofs outbox"
    assert "elliptiofs" in " ".join(prov["via"]["argv"])
    assert prov["pip_freeze"]["present"] is False and prov["git"]["present"] is False
    assert "pip_freeze" not in a.logs and len(a.logs) == 0
    assert "env" not in prov and "cwd" not in prov
    tree = {"run42/f0.txt", "run42/f1.txt", "run42/f2.txt", "run42/sub/deep.bin"}
    for name in ("run42", "rsynced", "untarred"):
        art = outbox_lake.get(ids[name])
        assert art is not None
        assert set(art.files) == {p.replace("run42", name, 1) for p in tree}, name
        assert art.dirs == [f"{name}/empty/inner", f"{name}/void"], name
        assert art.files[f"{name}/sub/deep.bin"].read_bytes() == \
            (src / "run42/sub/deep.bin").read_bytes()
        assert tree_of(art.download(tmp_path / "dl" / name) / name) == tree_of(src / "run42")
    # rsync's temporary (.model-rsync.pth.XXXXXX, renamed at the end) is never an artifact
    assert len(outbox_lake.search(user=ROOT, limit=None)) == 5

    # visible at once through this mount: artifacts/, by-user/, by-date/, the link itself
    assert (out / "model.pth" / "model.pth").read_bytes() == model
    assert set(os.listdir(m.path / "by-user" / ROOT)) == set(ids.values())
    day = a.created.strftime("%Y/%m/%d")
    assert ids["model.pth"] in os.listdir(m.path / "by-date" / day)
    assert (m.path / "artifacts" / ids["run42"] / "run42/f1.txt").read_text() == "file 1\n"
    # the link stays until the user removes it; the artifact does not go
    os.unlink(out / "model.pth")
    assert "model.pth" not in os.listdir(out)
    assert outbox_lake.get(ids["model.pth"]) is not None


def test_a_git_clone_and_a_restart_keep_empty_directories(lake_env_quiet, mount_factory,
                                                         outbox_lake, tmp_path):
    """A repository cloned into the outbox is the same tree as one cloned beside it (git
    leaves .git/refs/tags, .git/objects/info … empty), and works where it is downloaded.
    Empty directories of an entry staged when the daemon stops are in the journal: they
    come back under .recovered/ and are saved when the entry commits."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c",
           "init.defaultBranch=main"]
    repo = tmp_path / "repo"
    run(*git, "init", "-q", str(repo))
    (repo / "README").write_text("hello\n")
    run(*git, "-C", str(repo), "add", "README")
    run(*git, "-C", str(repo), "commit", "-q", "-m", "first")
    run(*git, "clone", "-q", "--no-hardlinks", str(repo), str(tmp_path / "local"))
    local_dirs, local_files = tree_of(tmp_path / "local")
    assert ".git/refs/tags" in local_dirs and not any((tmp_path / "local/.git/refs/tags")
                                                      .iterdir())
    m = mount_factory(lake_env_quiet, name="restart")
    out = m.path / "outbox"
    # cloned under a hidden name (never committed by itself), then renamed: one commit
    run(*git, "clone", "-q", "--no-hardlinks", str(repo), str(out / ".clone"))
    os.rename(out / ".clone", out / "clone")
    a = outbox_lake.get(committed(out / "clone"))
    assert a is not None and "clone/.git/refs/tags" in a.dirs
    got = a.download(tmp_path / "dl") / "clone"
    assert tree_of(got) == (local_dirs, local_files)
    assert run(*git, "-C", str(got), "log", "--format=%s").stdout == "first\n"
    assert run(*git, "-C", str(got), "fsck", "--no-progress", "--strict",
               check=False).returncode == 0

    # staged, hidden (it waits), with empty directories; the daemon stops and starts
    (out / ".staged/keep/me").mkdir(parents=True)
    (out / ".staged/also").mkdir()
    (out / ".staged/data.txt").write_text("data\n")
    m.unmount()
    m2 = mount_factory(lake_env_quiet, name="restart")
    rec = m2.path / "outbox/.recovered/.staged"
    assert tree_of(rec) == ({"keep", "keep/me", "also"}, {"data.txt"})
    os.rename(rec, m2.path / "outbox/staged")
    b = outbox_lake.get(committed(m2.path / "outbox/staged"))
    assert b is not None and b.dirs == ["staged/also", "staged/keep/me"]
    assert list(b.files) == ["staged/data.txt"]


def test_write_patterns_and_the_explicit_trigger(lake_env_quiet, mount_factory, outbox_lake,
                                                 tmp_path):
    m = mount_factory(lake_env_quiet)
    out = m.path / "outbox"
    spool = Path(m.env["ELLIPTIO_SPOOL"])

    # truncate and rewrite before the commit: only the last content is saved
    with open(out / "notes.txt", "w") as f:
        f.write("first draft, long\n" * 100)
        f.flush()
        f.truncate(0)
        f.seek(0)
        f.write("final\n")
        # an open handle holds the commit back, however long it stays quiet
        time.sleep(float(QUIET) * 3)
        assert not (out / "notes.txt").is_symlink()
        assert xattr(out / "notes.txt", "user.eio.state") == "staging"
        assert err(os.setxattr, out / "notes.txt", "user.eio.commit", b"1") == errno.EBUSY
    notes = outbox_lake.get(committed(out / "notes.txt"))
    assert notes is not None and notes.files["notes.txt"].read_text() == "final\n"
    with open(out / "append.txt", "w") as f:
        f.write("a\n")
    with open(out / "append.txt", "a") as f:
        f.write("b\n")
    with open(out / "append.txt", "r+") as f:  # rewrite in place, same size
        f.write("c")
    appended = outbox_lake.get(committed(out / "append.txt"))
    assert appended is not None and appended.files["append.txt"].read_text() == "c\nb\n"

    # hidden names (editors', rsync's temporaries) wait for a rename or the trigger
    (out / ".draft.txt").write_text("draft\n")
    os.mkdir(out / "empty")
    (out / "gone.txt").write_text("to be deleted\n")
    os.unlink(out / "gone.txt")
    os.mkdir(out / "d")
    os.mkdir(out / "d/sub")
    os.rmdir(out / "d/sub")
    (out / "d/x.txt").write_text("x\n")
    os.rename(out / "d/x.txt", out / "d/y.txt")
    time.sleep(float(QUIET) * 4)
    assert sorted(os.listdir(out)) == [".draft.txt", "append.txt", "d", "empty", "notes.txt"]
    d = outbox_lake.get(committed(out / "d"))
    assert d is not None and list(d.files) == ["d/y.txt"]
    assert not (out / ".draft.txt").is_symlink() and (out / "empty").is_dir()
    assert err(os.rmdir, out / "d") == errno.ENOTDIR  # now a symlink
    os.rename(out / ".draft.txt", out / "draft.txt")
    assert outbox_lake.get(committed(out / "draft.txt")) is not None

    # the trigger commits at once and waits: the link is there when setfattr returns
    (out / ".now.txt").write_text("now\n")
    run("setfattr", "-n", "user.eio.type", "-v", "note", str(out / ".now.txt"))
    run("setfattr", "-n", "user.eio.commit", "-v", "1", str(out / ".now.txt"))
    now = outbox_lake.get(os.readlink(out / ".now.txt").rsplit("/", 1)[1])
    assert now is not None and now.info == {"type": "note"}
    assert list(now.files) == [".now.txt"]
    assert err(os.setxattr, out / "empty", "user.eio.commit", b"1") == errno.EINVAL
    os.rmdir(out / "empty")

    # writes anywhere else stay read-only; nothing moves in or out of the outbox
    assert err(os.rename, out / "append.txt", m.path / "artifacts/x") == errno.EROFS
    assert err(os.symlink, "x", out / "l") == errno.EPERM
    # staged bytes are dropped once committed or deleted
    assert wait_for(lambda: not any((spool / "data").iterdir()), 5, "spool not emptied")


def test_sidecar_xattrs_and_an_invalid_sidecar(lake_env_quiet, mount_factory, outbox_lake,
                                               populated_one, tmp_path):
    parent = populated_one
    m = mount_factory(lake_env_quiet)
    out = m.path / "outbox"
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.pth").write_bytes(b"weights")
    (src / "model.pth.eio.yaml").write_text(
        f"type: model\ntags: [best, v2]\nbased_on: [{parent}]\ninfo: {{epochs: 10}}\n")
    # plain cp, sidecar first (cp copies in argument order)
    run("cp", str(src / "model.pth.eio.yaml"), str(src / "model.pth"), str(out))
    a = outbox_lake.get(committed(out / "model.pth"))
    assert a is not None
    assert a.info == {"type": "model", "epochs": 10} and a.tags == ["best", "v2"]
    assert a.based_on == [parent] and list(a.files) == ["model.pth"]
    assert "model.pth.eio.yaml" not in os.listdir(out)  # consumed by the commit
    assert a.id in os.listdir(m.path / "by-tag/best")
    assert os.listdir(m.path / "based-on" / parent) == [a.id]

    # a directory's .eio.yaml (not saved as a file) and xattrs, which win; based_on: none
    os.mkdir(out / ".run")
    (out / ".run/.eio.yaml").write_text("type: run\nlr: 0.1\n")
    (out / ".run/log.txt").write_text("ok\n")
    run("setfattr", "-n", "user.eio.type", "-v", "experiment", str(out / ".run"))
    run("setfattr", "-n", "user.eio.tags", "-v", "x,y", str(out / ".run"))
    run("setfattr", "-n", "user.eio.based_on", "-v", "", str(out / ".run"))
    got = run("getfattr", "-d", str(out / ".run")).stdout
    assert 'user.eio.type="experiment"' in got and 'user.eio.state="staging"' in got
    assert err(os.setxattr, out / ".run", "user.eio.tags", b"a/b") == errno.EINVAL
    assert err(os.setxattr, out / ".run", "user.eio.based_on", b"nope") == errno.EINVAL
    assert err(os.setxattr, out / ".run", "user.eio.state", b"x") == errno.EPERM
    assert err(os.setxattr, out / ".run", "trusted.x", b"x") == errno.EOPNOTSUPP
    run("setfattr", "-n", "user.eio.commit", "-v", "1", str(out / ".run"))
    r = outbox_lake.get(os.readlink(out / ".run").rsplit("/", 1)[1])
    assert r is not None and list(r.files) == [".run/log.txt"]
    assert r.info == {"type": "experiment", "lr": 0.1}
    assert r.tags == ["x", "y"] and r.based_on == []

    # an invalid sidecar: not committed, the error visible, nothing lost; fixed, it commits
    (out / "bad.bin.eio.yaml").write_text("type: [unclosed\n")
    (out / "bad.bin").write_bytes(b"precious")
    bad = out / "bad.bin"
    wait_for(lambda: xattr(bad, "user.eio.state") == "error", 10, "no error state")
    assert "sidecar bad.bin.eio.yaml: not valid YAML" in (xattr(bad, "user.eio.error") or "")
    assert "bad.bin of root is not committed: sidecar bad.bin.eio.yaml" in m.log_text()
    assert err(os.setxattr, bad, "user.eio.commit", b"1") == errno.EINVAL
    assert bad.read_bytes() == b"precious" and not bad.is_symlink()
    (out / "bad.bin.eio.yaml").write_text("type: fixed\n")
    fixed = outbox_lake.get(committed(bad))
    assert fixed is not None and fixed.info == {"type": "fixed"}
    assert fixed.files["bad.bin"].read_bytes() == b"precious"


@pytest.fixture
def populated_one(store_env: dict[str, str], tmp_path: Path) -> str:
    """One artifact of andy's in the lake (a parent to read or name)."""
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    lake = Lake(Settings.load())
    aid = lake.save([str(tmp_path / "data.csv")], info={"type": "dataset"}, based_on=[]).id
    lake.close()
    return aid


LINEAGE_SCRIPT = """
import os, sys
mount, out_name = sys.argv[1], sys.argv[2]
data = []
for rel in [a for a in sys.argv[3:] if not a.startswith("--")]:
    with open(os.path.join(mount, rel), "rb") as f:  # reads through the mount
        data.append(f.read())
with open(os.path.join(mount, "outbox", out_name), "wb") as f:
    f.write(data[0][::-1] if data else b"nothing read")
"""


def test_lineage_from_what_the_writer_read(lake_env_quiet, mount_factory, outbox_lake,
                                           populated_one, tmp_path):
    parent = populated_one
    (tmp_path / "other.txt").write_text("other\n")
    other = outbox_lake.save([str(tmp_path / "other.txt")], based_on=[]).id
    m = mount_factory(lake_env_quiet)
    script = tmp_path / "train.py"
    script.write_text(LINEAGE_SCRIPT)
    # each script its own session (the default scope): reads twice, one parent once
    secret = "hunter2-" + secrets.token_hex(8)
    run("setsid", "-w", sys.executable, str(script), str(m.path), "derived.bin",
        f"artifacts/{parent}/data.csv", f"by-user/andy/{parent}/data.csv",
        f"artifacts/{other}/.eio/metadata.yaml", f"--api-token={secret}")
    run("setsid", "-w", sys.executable, str(script), str(m.path), "fresh.bin")
    derived = outbox_lake.get(committed(m.path / "outbox/derived.bin"))
    fresh = outbox_lake.get(committed(m.path / "outbox/fresh.bin"))
    assert derived is not None and fresh is not None
    # metadata.yaml is not a use of the artifact; the file read twice counts once
    assert derived.based_on == [parent]
    assert derived.files["derived.bin"].read_bytes() == b"a,b\n1,2\n"[::-1]
    # the writer's command line is its provenance, with secret-looking values redacted
    assert derived.provenance["argv"][1] == str(script)
    assert secret not in json.dumps(derived.metadata) and "--api-token=***" in \
        derived.provenance["outbox"]["writers"][0]
    assert fresh.based_on == []
    assert os.listdir(m.path / "based-on" / parent) == [derived.id]
    lineage = run("eio", "lineage", "--parents", "--json", derived.id,
                  env={**os.environ, **m.env}).stdout
    assert parent in json.dumps(json.loads(lineage))


# -- two users on a shared mount ---------------------------------------------------------------
def as_user(user: str, *cmd: str, check: bool = True,
            **env: str) -> subprocess.CompletedProcess[str]:
    """*cmd* run as the local account *user* (runuser), with *env* set."""
    return run("runuser", "-u", user, "--", "env", *(f"{k}={v}" for k, v in env.items()),
               *cmd, check=check)


@pytest.fixture
def two_users() -> Iterator[tuple[str, str]]:
    """Two real local accounts, removed afterwards."""
    names = [f"eiot{secrets.token_hex(3)}{c}" for c in "ab"]
    made = []
    try:
        for n in names:
            run("useradd", "--no-create-home", "--shell", "/bin/sh", n)
            made.append(n)
        yield names[0], names[1]
    finally:
        for n in made:
            subprocess.run(["userdel", n], capture_output=True, timeout=30)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user can enter (pytest's tmp_path is its owner's only)."""
    d = Path(tempfile.mkdtemp(prefix="eio-shared-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_two_users_own_their_entries(lake_env_quiet, mount_factory, outbox_lake, two_users,
                                     shared_dir):
    alice, bob = two_users
    m = mount_factory(lake_env_quiet, "--allow-other", base=shared_dir)
    try:
        out = m.path / "outbox"
        src = shared_dir / "src.txt"
        src.write_text("alice's secret\n")
        src.chmod(0o644)

        # hidden names do not commit by themselves: the staged entries stay to be probed
        as_user(alice, "cp", str(src), str(out / ".a.txt"), ELLIPTIO_USER="mallory")
        as_user(alice, "mkdir", str(out / ".adir"))
        as_user(alice, "cp", str(src), str(out / ".adir/in.txt"))
        st = os.stat(out / ".a.txt")
        assert st.st_uid == pwd.getpwnam(alice).pw_uid
        for cmd in (["cat", str(out / ".a.txt")],
                    ["cp", "/etc/hostname", str(out / ".a.txt")],
                    ["truncate", "-s", "0", str(out / ".a.txt")],
                    ["rm", "-f", str(out / ".a.txt")],
                    ["mv", str(out / ".a.txt"), str(out / "b.txt")],
                    ["ls", str(out / ".adir")],
                    ["cat", str(out / ".adir/in.txt")],
                    ["touch", str(out / ".adir/new.txt")],
                    ["rm", "-rf", str(out / ".adir")],
                    ["getfattr", "-n", "user.eio.state", str(out / ".a.txt")],
                    ["setfattr", "-n", "user.eio.type", "-v", "x", str(out / ".a.txt")],
                    ["setfattr", "-n", "user.eio.commit", "-v", "1", str(out / ".a.txt")]):
            res = as_user(bob, *cmd, check=False)
            assert res.returncode != 0, f"bob could run {cmd}"
            assert "ermission denied" in res.stderr or "not permitted" in res.stderr, \
                (cmd, res.stderr)
        assert (out / ".a.txt").read_text() == "alice's secret\n"  # root may
        # bob's own entry: his, committed as his
        as_user(bob, "sh", "-c", f"echo bob > {out}/bob.txt")
        b = outbox_lake.get(committed(out / "bob.txt"))
        assert b is not None and b.user == bob
        # alice commits hers; the environment did not change the owner
        as_user(alice, "setfattr", "-n", "user.eio.commit", "-v", "1", str(out / ".a.txt"))
        a = outbox_lake.get(os.readlink(out / ".a.txt").rsplit("/", 1)[1])
        assert a is not None and a.user == alice
        assert a.files[".a.txt"].read_text() == "alice's secret\n"
        # bob cannot remove alice's link either (sticky outbox/), alice can
        assert as_user(bob, "rm", "-f", str(out / ".a.txt"), check=False).returncode != 0
        as_user(alice, "rm", str(out / ".a.txt"))
        as_user(alice, "rm", "-r", str(out / ".adir"))
        assert sorted(os.listdir(m.path / "by-user")) == sorted([alice, bob])
    finally:
        m.unmount()  # before shared_dir goes


STAT = ("import errno, os, sys\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        os.stat(p)\n"
        "        print('ok')\n"
        "    except OSError as exc:\n"
        "        print(errno.errorcode[exc.errno])\n")


def test_another_users_metadata_does_not_count_and_their_tree_is_closed(
        lake_env, mount_factory, two_users, shared_dir):
    """On a shared mount bob writes sidecars beside alice's entries (outbox/ is sticky,
    like /tmp: he may) and root sets an xattr on one: none of it is applied to her
    artifacts, his invalid sidecar does not stop her commit, the daemon says so in one
    line; and bob cannot look up or stat anything inside her staged directory."""
    alice, bob = two_users
    env = {**lake_env, "ELLIPTIO_OUTBOX_QUIET": QUIET}
    m = mount_factory(env, "--allow-other", base=shared_dir)
    lake = Lake(Settings.load())
    try:
        out = m.path / "outbox"
        for name, text in (("data.bin", "alice's data\n"), ("evil.yaml", "type: evil\n"
                           "tags: [pwned]\nbased_on: []\n"), ("broken.yaml", "type: [\n")):
            (shared_dir / name).write_text(text)
            (shared_dir / name).chmod(0o644)
        # hidden names: staged until alice triggers them
        as_user(alice, "cp", str(shared_dir / "data.bin"), str(out / ".a.bin"))
        as_user(alice, "cp", str(shared_dir / "data.bin"), str(out / ".b.bin"))
        as_user(bob, "cp", str(shared_dir / "evil.yaml"), str(out / ".a.bin.eio.yaml"))
        as_user(bob, "cp", str(shared_dir / "broken.yaml"), str(out / ".b.bin.eio.yaml"))
        as_user(alice, "setfattr", "-n", "user.eio.type", "-v", "hers", str(out / ".a.bin"))
        os.setxattr(out / ".a.bin", "user.eio.tags", b"rooted")  # root, not alice
        as_user(alice, "setfattr", "-n", "user.eio.commit", "-v", "1", str(out / ".a.bin"))
        a = lake.get(os.readlink(out / ".a.bin").rsplit("/", 1)[1])
        assert a is not None and a.user == alice
        assert (a.info, a.tags, a.based_on) == ({"type": "hers"}, [], [])
        res = as_user(alice, "setfattr", "-n", "user.eio.commit", "-v", "1",
                      str(out / ".b.bin"), check=False)
        assert res.returncode == 0, res.stderr  # bob's broken sidecar does not block her
        b = lake.get(os.readlink(out / ".b.bin").rsplit("/", 1)[1])
        assert b is not None and b.files[".b.bin"].read_text() == "alice's data\n"
        # bob's sidecars are left as they were: his, staged, not consumed
        assert os.stat(out / ".a.bin.eio.yaml").st_uid == pwd.getpwnam(bob).pw_uid
        assert (out / ".b.bin.eio.yaml").read_text() == "type: [\n"
        log = m.log_text()
        assert f".a.bin of {alice}: ignoring what another user wrote for it: sidecar " \
               f".a.bin.eio.yaml ({bob}); user.eio.tags (set by {ROOT})" in log
        assert f".b.bin of {alice}: ignoring what another user wrote for it: sidecar " \
               f".b.bin.eio.yaml ({bob})" in log
        assert "not committed" not in log

        # inside alice's staged directory bob can neither list, nor look up, nor stat
        as_user(alice, "mkdir", str(out / ".adir"))
        as_user(alice, "cp", str(shared_dir / "data.bin"), str(out / ".adir/in.txt"))
        script = shared_dir / "stat.py"
        script.write_text(STAT)
        script.chmod(0o644)
        python = shutil.which("python3", path="/usr/bin:/usr/local/bin") or "python3"
        paths = [str(out / ".adir"), str(out / ".adir/in.txt"), str(out / ".adir/missing")]
        got = as_user(bob, python, str(script), *paths).stdout.split()
        assert got == ["ok", "EACCES", "EACCES"]
        assert as_user(alice, python, str(script), *paths).stdout.split() == \
            ["ok", "ok", "ENOENT"]
        listing = as_user(bob, "ls", str(out / ".adir"), check=False)
        assert listing.returncode != 0 and "Permission denied" in listing.stderr
    finally:
        lake.close()
        m.unmount()  # before shared_dir goes


BOMB = (b'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n'
        + b"".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n".encode()
                   for p, c in zip("abcdefg", "bcdefgh")))


def test_a_yaml_bomb_sidecar_is_refused_fast_and_the_daemon_keeps_serving(
        lake_env, mount_factory):
    """A few hundred bytes of aliases (10**8 nodes expanded) as a sidecar: the trigger is
    refused at once with an error naming the sidecar, the mount answers meanwhile and
    after, the entry keeps its bytes and commits once the sidecar is fixed."""
    m = mount_factory({**lake_env, "ELLIPTIO_OUTBOX_QUIET": QUIET})
    lake = Lake(Settings.load())
    try:
        out = m.path / "outbox"
        (out / ".bomb.bin.eio.yaml").write_bytes(BOMB)
        (out / ".bomb.bin").write_bytes(b"precious")
        started = time.monotonic()
        trigger = subprocess.Popen(["setfattr", "-n", "user.eio.commit", "-v", "1",
                                    str(out / ".bomb.bin")], stderr=subprocess.PIPE,
                                   text=True)
        try:
            assert sorted(os.listdir(out)) == [".bomb.bin", ".bomb.bin.eio.yaml"]
            _, stderr = trigger.communicate(timeout=60)
        finally:
            if trigger.poll() is None:
                trigger.kill()  # by pid: ours
                trigger.wait()
        assert time.monotonic() - started < 20  # generous: it takes milliseconds
        assert trigger.returncode != 0 and "Invalid argument" in stderr
        error = xattr(out / ".bomb.bin", "user.eio.error") or ""
        assert "sidecar .bomb.bin.eio.yaml: expands to more than" in error
        assert xattr(out / ".bomb.bin", "user.eio.state") == "error"
        assert (out / ".bomb.bin").read_bytes() == b"precious"
        assert f".bomb.bin of {ROOT} is not committed: sidecar .bomb.bin.eio.yaml" in \
            m.log_text()
        (out / ".bomb.bin.eio.yaml").write_text("type: defused\n")
        run("setfattr", "-n", "user.eio.commit", "-v", "1", str(out / ".bomb.bin"))
        a = lake.get(os.readlink(out / ".bomb.bin").rsplit("/", 1)[1])
        assert a is not None and a.info == {"type": "defused"}
        assert a.files[".bomb.bin"].read_bytes() == b"precious"
    finally:
        lake.close()


def test_a_missing_journal_keeps_the_staged_bytes(lake_env, mount_factory):
    """The spool's journal is deleted while the daemon is stopped: the staged files come
    back under .recovered/ (their names were in the journal: unnamed-<n>), byte for
    byte, said in the log; moved back into outbox/, one commits."""
    env = {**lake_env, "ELLIPTIO_OUTBOX_QUIET": "600"}
    m = mount_factory(env, name="nojournal")
    spool = Path(m.env["ELLIPTIO_SPOOL"])
    payload = os.urandom(3 << 20)
    (m.path / "outbox/model.pth").write_bytes(payload)
    os.mkdir(m.path / "outbox/run")
    (m.path / "outbox/run/notes.txt").write_text("notes\n")
    m.unmount()
    journal = sorted(spool.glob("journal.sqlite*"))
    assert journal and len(list((spool / "data").iterdir())) == 2
    for f in journal:
        f.unlink()
    m2 = mount_factory({**lake_env, "ELLIPTIO_OUTBOX_QUIET": QUIET}, name="nojournal")
    rec = m2.path / "outbox/.recovered"
    kept = sorted(os.listdir(rec))
    assert len(kept) == 2 and all(n.startswith("unnamed-") for n in kept)
    contents = sorted((rec / n).read_bytes() for n in kept)
    assert contents == sorted([payload, b"notes\n"])
    big = next(n for n in kept if (rec / n).stat().st_size == len(payload))
    assert xattr(rec / big, "user.eio.state") == "recovered"
    assert "journal was missing" in (xattr(rec / big, "user.eio.error") or "")
    assert "was missing at start; kept the 2 staged file(s)" in m2.log_text()
    os.rename(rec / big, m2.path / "outbox/model.pth")
    lake = Lake(Settings.load())
    try:
        a = lake.get(committed(m2.path / "outbox/model.pth"))
        assert a is not None and a.files["model.pth"].read_bytes() == payload
    finally:
        lake.close()


# -- crashes and failures ----------------------------------------------------------------------
WRITER = """
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
chunk = bytes(range(256)) * 4096  # 1 MiB
done = 0
try:
    while True:
        n = os.write(fd, chunk)
        os.fsync(fd)  # with the writeback cache, written is not yet staged: synced is
        done += n
        print(done, flush=True)
except OSError as exc:
    print("error", exc.errno, flush=True)
"""


def test_kill_9_during_a_copy_keeps_every_staged_byte(store_env, mount_factory, outbox_lake,
                                                      tmp_path):
    env = {**store_env, "ELLIPTIO_OUTBOX_QUIET": "600"}
    m = mount_factory(env, name="crash")
    out = m.path / "outbox"
    (out / "done.txt").write_text("complete, not yet committed\n")
    (out / "early.txt").write_text("committed before the crash\n")
    run("setfattr", "-n", "user.eio.commit", "-v", "1", str(out / "early.txt"))
    early = os.readlink(out / "early.txt")
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    writer = subprocess.Popen([sys.executable, str(script), str(out / "big.bin")],
                              stdout=subprocess.PIPE, text=True)
    acked = 0
    try:
        assert writer.stdout is not None
        while acked < 20 << 20:
            acked = int(writer.stdout.readline())
        m.proc.send_signal(signal.SIGKILL)  # by pid: our daemon
        m.proc.wait(timeout=15)
        m.unmounted = True
        rest = writer.stdout.read().split()
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        if writer.stdout:
            writer.stdout.close()
    acked = max([acked, *(int(x) for x in rest if x.isdigit())])
    wait_for(lambda: not os.path.ismount(m.path), 15, "auto_unmount did not unmount")
    assert outbox_lake.search(user=ROOT, limit=None)[0].id == early.rsplit("/", 1)[1]

    m2 = mount_factory({**store_env, "ELLIPTIO_OUTBOX_QUIET": QUIET}, name="crash")
    out = m2.path / "outbox"
    assert sorted(os.listdir(out)) == [".recovered", "early.txt"]
    assert os.readlink(out / "early.txt") == early
    rec = out / ".recovered"
    assert sorted(os.listdir(rec)) == ["big.bin", "done.txt"]
    big = (rec / "big.bin").read_bytes()
    assert len(big) >= acked and len(big) % 4096 == 0
    assert big == (bytes(range(256)) * 4096 * (len(big) // (1 << 20) + 1))[:len(big)]
    assert xattr(rec / "big.bin", "user.eio.state") == "recovered"
    assert "stopped before this entry was committed" in (xattr(rec / "big.bin",
                                                               "user.eio.error") or "")
    assert "kept as outbox/.recovered/big.bin" in m2.log_text()
    time.sleep(float(QUIET) * 3)
    assert len(outbox_lake.search(user=ROOT, limit=None)) == 1  # nothing committed itself
    # the user decides: move it back (commits), or delete it
    os.rename(rec / "done.txt", out / "done.txt")
    done = outbox_lake.get(committed(out / "done.txt"))
    assert done is not None
    assert done.files["done.txt"].read_text() == "complete, not yet committed\n"
    os.unlink(rec / "big.bin")
    assert sorted(os.listdir(out)) == ["done.txt", "early.txt"]


def test_a_failing_store_keeps_the_entry_pending_and_retries(lake_env, mount_factory):
    """On the local store only: it is broken by replacing its directory with a file."""
    env = {**lake_env, "ELLIPTIO_OUTBOX_QUIET": QUIET, "ELLIPTIO_OUTBOX_RETRY": "0.5"}
    m = mount_factory(env)
    outbox_lake = Lake(Settings.load())
    store = Path(lake_env["ELLIPTIO_STORE"][len("file://"):])
    moved = store.with_name("store-away")
    store.rename(moved)
    store.write_text("not a directory: every write fails")
    try:
        (m.path / "outbox/result.csv").write_text("x,y\n")
        f = m.path / "outbox/result.csv"
        wait_for(lambda: xattr(f, "user.eio.state") == "pending", 10, "not pending")
        assert "retrying in" in (xattr(f, "user.eio.error") or "")
        assert "committing result.csv of root failed, retrying" in m.log_text()
        assert err(os.setxattr, f, "user.eio.commit", b"1") == errno.EIO
        assert f.read_text() == "x,y\n"
    finally:
        store.unlink()
        moved.rename(store)
    a = outbox_lake.get(committed(m.path / "outbox/result.csv", timeout=30))
    assert a is not None and a.files["result.csv"].read_text() == "x,y\n"
    outbox_lake.close()


KILLED_WRITER = """
import os, signal, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, b"half of it")
os.kill(os.getpid(), signal.SIGKILL)  # dies with the file open: a partial copy
"""


def test_a_writer_killed_mid_copy_is_not_committed(lake_env_quiet, mount_factory,
                                                   outbox_lake, tmp_path):
    m = mount_factory(lake_env_quiet)
    f = m.path / "outbox/partial.bin"
    script = tmp_path / "killed.py"
    script.write_text(KILLED_WRITER)
    res = run(sys.executable, str(script), str(f), check=False)
    assert res.returncode == -signal.SIGKILL
    wait_for(lambda: xattr(f, "user.eio.state") == "error", 10, "not marked")
    assert "killed by signal 9" in (xattr(f, "user.eio.error") or "")
    time.sleep(float(QUIET) * 4)
    assert not f.is_symlink() and f.read_bytes() == b"half of it"
    assert outbox_lake.search(user=ROOT, limit=None) == []
    f.write_bytes(b"all of it")  # written again, completely: commits
    a = outbox_lake.get(committed(f))
    assert a is not None and a.files["partial.bin"].read_bytes() == b"all of it"


# -- systemd units and the fstab helper --------------------------------------------------------
SYSTEMD = Path(__file__).resolve().parent.parent / "systemd"


def unit_exec_start(unit: Path) -> str:
    lines = [ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart=")]
    assert len(lines) == 1, unit
    return lines[0][len("ExecStart="):]


def test_units_verify(tmp_path):
    """systemd-analyze verify (an instance of the template; the user unit in a user
    manager's view); without systemd-analyze, the same keys checked by hand."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    for unit, user in ((SYSTEMD / "elliptiofs@.service", False),
                       (SYSTEMD / "user/elliptiofs.service", True)):
        text = unit.read_text()
        sections: dict[str, dict[str, str]] = {}
        for ln in text.splitlines():
            if ln.startswith("["):
                current = sections.setdefault(ln.strip("[]"), {})
            elif ln and not ln.startswith("#"):
                key, _, value = ln.partition("=")
                current[key] = value
        service = sections["Service"]
        assert service["Type"] == "notify" and service["KillMode"] == "mixed"
        assert "--foreground" in service["ExecStart"]
        assert set(sections) == {"Unit", "Service", "Install"}
        if shutil.which("systemd-analyze") is None:
            continue
        target = tmp_path / unit.name.replace("@", "@mnt-eio")
        target.write_text(text)
        cmd = ["systemd-analyze", "verify", "--man=no", *(["--user"] if user else []),
               str(target)]
        res = run(*cmd, check=False, env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
        problems = [ln for ln in (res.stdout + res.stderr).splitlines()
                    if target.name in ln or "elliptiofs" in ln]
        assert res.returncode == 0 and not problems, res.stdout + res.stderr


@pytest.mark.parametrize("unit", ["elliptiofs@.service", "user/elliptiofs.service"])
def test_the_units_exec_start_runs_notifies_and_stops_cleanly(unit, store_env, tmp_path,
                                                            outbox_lake):
    """The exact ExecStart line, specifiers expanded as systemd would: READY=1 once
    mounted, a working outbox, SIGTERM (systemd's stop) unmounts and exits 0."""
    home = tmp_path / "home"
    mnt = home / "eio" if unit.startswith("user/") else tmp_path / "mnt-eio"
    mnt.mkdir(parents=True)
    line = unit_exec_start(SYSTEMD / unit).replace("%f", str(mnt)).replace("%h", str(home))
    assert "%" not in line, line
    cmd = line.split()
    env = {**os.environ, **store_env, "HOME": str(home), "NOTIFY_SOCKET": str(tmp_path / "n"),
           "ELLIPTIO_SPOOL": str(tmp_path / "spool"), "ELLIPTIO_OUTBOX_QUIET": QUIET,
           "ELLIPTIO_READLOG": str(tmp_path / "readlog.sqlite")}
    with notify_socket(tmp_path / "n") as received, \
            open(tmp_path / "daemon.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            assert "READY=1" in received(10, "READY=1"), (tmp_path / "daemon.log").read_text()
            assert os.path.ismount(mnt)
            (mnt / "outbox/via-unit.txt").write_text("hi\n")
            assert outbox_lake.get(committed(mnt / "outbox/via-unit.txt")) is not None
            proc.send_signal(signal.SIGTERM)  # by pid: ours
            assert proc.wait(timeout=30) == 0
            assert "STOPPING=1" in received(0.5, "STOPPING=1")
            assert not os.path.ismount(mnt)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True)


def test_fstab_mount_helper(store_env, tmp_path, outbox_lake):
    mnt = tmp_path / "fstab-mnt"
    mnt.mkdir()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"store: {store_env['ELLIPTIO_STORE']}\n"
                   f"catalogue: {store_env['ELLIPTIO_CATALOGUE']}\n"
                   f"spool: {tmp_path / 'spool'}\nreadlog: {tmp_path / 'readlog.sqlite'}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELLIPTIO_")}
    # what mount(8) runs for `elliptiofs /mnt/eio fuse.elliptiofs <options> 0 0`
    res = run(str(SYSTEMD / "mount.fuse.elliptiofs"), "elliptiofs", str(mnt), "-o",
              f"rw,nodev,nosuid,_netdev,noatime,x-systemd.automount,allow_other,scope=pid,"
              f"config={cfg},log={tmp_path / 'fstab.log'}", env=env, check=False)
    try:
        assert res.returncode == 0, res.stderr
        assert os.path.ismount(mnt)
        line = next(ln for ln in Path("/proc/mounts").read_text().splitlines()
                    if f" {mnt} " in ln)
        assert line.startswith(f"elliptiofs {mnt} fuse.elliptiofs ") and "allow_other" in line
        assert os.listdir(mnt / "outbox") == []
        bad = run(str(SYSTEMD / "mount.fuse.elliptiofs"), "elliptiofs", str(tmp_path),
                  "-o", "bogus=1", env=env, check=False)
        assert bad.returncode == 2 and "unknown option bogus" in bad.stderr
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
    wait_for(lambda: not os.path.ismount(mnt), 10, "not unmounted")


# -- metadata parsing, without a mount ----------------------------------------------------------
def test_sidecar_and_xattr_metadata():
    aid = "01m885enepz71bzjbdwt9kmdr2"
    got = sidecar_metadata(f"type: m\ntags: t\nbased_on: {aid}\ninfo: {{k: 1}}\n".encode(), "s")
    assert got == {"info": {"type": "m", "k": 1}, "tags": ["t"], "based_on": [aid]}
    assert sidecar_metadata(b"based_on: []\n", "s")["based_on"] == []
    assert sidecar_metadata(b"", "s") == {}
    for bad, message in ((b"- a list\n", "must be a mapping"), (b"a: [\n", "not valid YAML"),
                         (b"info: 3\n", "info must be a mapping"),
                         (b"based_on: [xyz]\n", "xyz"), (b"tags: ['a/b']\n", "a/b"),
                         (b"\xff\xfe", "not valid YAML"),
                         (BOMB, "s: expands to more than"),
                         (b"a: &a [*a]\n", "self-referencing"),
                         (b"k: " + b"[" * 100 + b"]" * 100 + b"\n", "deeper than"),
                         (b"#" * (64 << 10) + b"\n", "at most 65536")):
        with pytest.raises(UsageError, match=message):
            sidecar_metadata(bad, "s")
    x = xattr_metadata({"user.eio.type": b"model", "user.eio.tags": b"a, b,",
                        "user.eio.based_on": f"{aid} {aid}".encode(), "user.other": b"x"})
    assert x == {"info": {"type": "model"}, "tags": ["a", "b"], "based_on": [aid]}
    assert xattr_metadata({"user.eio.based_on": b""})["based_on"] == []
    for name in ("user.eio.a.b", "user.eio.state", "user.eio."):
        with pytest.raises(UsageError):
            xattr_metadata({name: b"1"})
    with pytest.raises(UsageError, match="UTF-8"):
        xattr_metadata({"user.eio.type": b"\xff"})
