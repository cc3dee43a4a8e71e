"""The mount, for real: the daemon as a subprocess, real programs against it.

Few tests, each doing a lot: populating a lake and mounting costs about a second. Every
mount is unmounted with fusermount3 and the daemon must exit 0 (tests/fixtures/fuse.py).
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from elliptio import Lake, Settings
from elliptiofs.readlog import ReadLog, scope_for
from tests.fixtures.fuse import notify_socket
from tests.fixtures.trees import tree_of

pytestmark = pytest.mark.fuse


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, cwd=cwd, text=True, capture_output=True, timeout=60)
    assert res.returncode == 0, f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr}"
    return res


def wait_for_unmounting(log: Path, timeout: float = 10) -> None:
    """Until the daemon's log *log* says it is unmounting (it runs on after fusermount3)."""
    deadline = time.monotonic() + timeout
    while "unmounting" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


@pytest.fixture
def populated(store_env: dict[str, str], tmp_path: Path) -> dict[str, object]:
    """andy's dataset (csv, a sub-directory, a 3 MB binary, empty directories
    data/empty/inner/ and data/void/), brenda's model based on it."""
    work = tmp_path / "work"
    (work / "data/raw").mkdir(parents=True)
    (work / "data/empty/inner").mkdir(parents=True)
    (work / "data/void").mkdir()
    (work / "train.csv").write_text("a,b\n1,2\n3,4\n")
    (work / "data/raw/x.txt").write_text("hello\n")
    big = os.urandom(3_000_000)
    (work / "data/big.bin").write_bytes(big)
    lake = Lake(Settings.load())
    andy = lake.save([str(work / "train.csv"), str(work / "data")],
                     info={"type": "dataset_list", "stratification": "new-cool-method"},
                     tags=["dataset", "x*y"], based_on=[])
    with Lake(Settings.load(user="brenda")) as brenda_lake:
        brenda = brenda_lake.save([str(work / "train.csv")], info={"type": "model"},
                                  based_on=[andy.id])
    lake.close()
    return {"andy": andy, "brenda": brenda, "big": big, "work": work}


def test_real_programs_read_the_tree(populated, lake_mount, tmp_path):
    m = lake_mount()
    root = m.path
    andy, brenda = populated["andy"], populated["brenda"]
    art = root / "artifacts" / andy.id

    # ls -lR and find walk everything once: entries outside artifacts/ are symlinks
    run("ls", "-lR", str(root))
    files = run("find", str(root), "-type", "f").stdout.split()
    expected = {f"artifacts/{andy.id}/{p}" for p in
                ("train.csv", "data/raw/x.txt", "data/big.bin", ".eio/metadata.yaml")}
    rel = {os.path.relpath(f, root) for f in files}
    assert expected <= rel
    assert all(r.startswith("artifacts/") for r in rel)
    links = run("find", str(root), "-type", "l").stdout.split()
    assert str(root / "by-user/andy" / andy.id) in links
    # empty directories are directories, empty, wherever the artifact is reached
    dirs = {os.path.relpath(d, art) for d in run("find", str(art), "-type", "d").stdout.split()}
    assert dirs == {".", "data", "data/raw", "data/empty", "data/empty/inner", "data/void",
                    ".eio", ".eio/logs"}
    assert andy.dirs == ["data/empty/inner", "data/void"]
    assert os.listdir(root / "by-user/andy" / andy.id / "data/void") == []
    assert os.listdir(art / "data/empty") == ["inner"]

    # stat: real sizes, mtime = created, read-only modes
    st = os.stat(art / "data/big.bin")
    assert st.st_size == 3_000_000 and st.st_mode & 0o777 == 0o444
    assert abs(st.st_mtime - andy.created.timestamp()) < 0.002
    assert os.readlink(root / "by-user/andy" / andy.id) == f"../../artifacts/{andy.id}"
    assert os.readlink(root / "by-date" / andy.created.strftime("%Y/%m/%d") / andy.id) \
        == f"../../../../artifacts/{andy.id}"

    # contents, through cat, sha256sum, cp -r, rsync -a, tar
    assert run("cat", str(root / "by-user/andy" / andy.id / "train.csv")).stdout == \
        "a,b\n1,2\n3,4\n"
    sums = run("sha256sum", str(art / "data/big.bin")).stdout.split()[0]
    assert sums == hashlib.sha256(populated["big"]).hexdigest()
    run("cp", "-r", str(art), str(tmp_path / "copy"))
    assert (tmp_path / "copy/data/big.bin").read_bytes() == populated["big"]
    run("rsync", "-a", f"{art}/", str(tmp_path / "rsynced"))
    assert (tmp_path / "rsynced/data/raw/x.txt").read_text() == "hello\n"
    work = populated["work"]
    assert isinstance(work, Path)
    assert tree_of(tmp_path / "copy/data") == tree_of(work / "data")
    assert tree_of(tmp_path / "rsynced/data") == tree_of(work / "data")
    listing = subprocess.run(f"tar c -C {root}/artifacts {andy.id} | tar t", shell=True,
                             text=True, capture_output=True, check=True).stdout.split()
    assert f"{andy.id}/data/big.bin" in listing
    assert (tmp_path / "copy/.eio/metadata.yaml").read_text().startswith("elliptio: 1")

    # extended attributes
    xattrs = run("getfattr", "-d", str(art / "train.csv")).stdout
    sha = hashlib.sha256(b"a,b\n1,2\n3,4\n").hexdigest()
    for line in (f'user.eio.id="{andy.id}"', 'user.eio.user="andy"',
                 f'user.eio.sha256="{sha}"', "user.eio.created=", "user.eio.url="):
        assert line in xattrs

    # pandas, any program: reads through the mount
    code = f"import pandas; print(int(pandas.read_csv({str(art / 'train.csv')!r})['b'].sum()))"
    assert run(sys.executable, "-c", code).stdout.strip() == "6"

    # the query directories
    assert os.listdir(root / "based-on" / andy.id) == [brenda.id]
    assert os.listdir(root / "by-tag/x*y") == [andy.id]
    assert sorted(os.listdir(root / "by-user")) == ["andy", "brenda"]
    q = "user=andy,file=*.csv,tag=*data*"
    assert os.listdir(root / "search" / q) == [andy.id]
    assert sorted(os.listdir(root / "search/file=train.csv")) == sorted([andy.id, brenda.id])
    assert os.listdir(root / "outbox") == []


def _errno(fn, *args) -> int:
    try:
        fn(*args)
    except OSError as exc:
        return exc.errno
    raise AssertionError(f"{fn.__name__}{args} did not fail")


def test_errnos_and_failures_keep_the_daemon_serving(populated, lake_mount, store_env):
    m = lake_mount()
    root = m.path
    andy = populated["andy"]
    f = root / "artifacts" / andy.id / "train.csv"
    EROFS, ENOENT, EINVAL = errno.EROFS, errno.ENOENT, errno.EINVAL
    assert _errno(os.open, str(f), os.O_WRONLY) == EROFS
    assert _errno(os.open, str(f.parent / "new"), os.O_WRONLY | os.O_CREAT) == EROFS
    assert _errno(os.rename, str(f), str(f.parent / "moved")) == EROFS
    assert _errno(os.unlink, str(f)) == EROFS
    assert _errno(os.chmod, str(f), 0o777) == EROFS
    assert _errno(os.mkdir, str(root / "by-user/new")) == EROFS
    assert _errno(os.rmdir, str(root / "by-user/andy")) == EROFS
    assert _errno(os.setxattr, str(f), "user.x", b"1") == EROFS
    # outbox/ is the one writable place: tests/test_t6_fs_outbox.py
    unknown = "0" * 26
    assert _errno(os.stat, str(root / "artifacts" / unknown)) == ENOENT
    assert _errno(os.stat, str(root / "based-on" / unknown)) == ENOENT
    assert _errno(os.stat, str(root / "by-user/nobody")) == ENOENT
    assert _errno(os.stat, str(root / "by-user/andy" / populated["brenda"].id)) == ENOENT
    assert _errno(os.listdir, str(root / "search/user=andy,bogus=1")) == EINVAL
    assert _errno(os.listdir, str(root / "search/no-equals-sign")) == EINVAL
    deadline = time.monotonic() + 5
    while "malformed search query: unknown query key 'bogus'" not in m.log_text():
        assert time.monotonic() < deadline, m.log_text()
        time.sleep(0.05)

    if store_env["ELLIPTIO_STORE"].startswith("file://"):
        # an object lost from the store after start: EIO for that file, the rest serves on
        store_root = Path(store_env["ELLIPTIO_STORE"][len("file://"):])
        obj = store_root / andy.files["data/raw/x.txt"].object
        obj.parent.chmod(0o755)
        obj.unlink()
        assert _errno(Path.read_bytes, root / "artifacts" / andy.id / "data/raw/x.txt") \
            == errno.EIO
        assert f.read_text() == "a,b\n1,2\n3,4\n"
    assert m.proc.poll() is None


def test_mount_is_tuned_after_init(populated, store_env, mount_factory, tmp_path):
    """Read-ahead is raised once the kernel has processed INIT (processing it clamps the
    mount's read-ahead to 128 KiB: raised earlier, it was undone and reads went in 128 KiB
    requests), and a sequential reader that asks the kernel for more (cat's
    FADV_SEQUENTIAL) gets the right bytes with no failed request."""
    from elliptiofs.kernel import mount_device

    # READY=1 goes out once the tuning is done (watching read_ahead_kb alone raced with
    # the write of max_background that follows it: CI read the default, 12)
    with notify_socket(tmp_path / "notify") as received:
        m = mount_factory({**store_env, "NOTIFY_SOCKET": str(tmp_path / "notify")})
        assert "READY=1" in received(30, "READY=1"), m.log_text()
    dev = os.stat(m.path).st_dev
    # the mount is found by its type (the bench's floor mount tunes itself the same way)
    assert mount_device(str(m.path)) == f"{os.major(dev)}:{os.minor(dev)}"
    assert mount_device(str(m.path), "fuse.elliptiofs-floor") is None
    ra = Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb")
    expected = "4096" if os.geteuid() == 0 else "128"  # sysfs is root's to change
    assert ra.read_text().strip() == expected
    if os.geteuid() == 0:
        # the daemon mounts fusectl for tuning where it is missing, and unmounts it after
        ctl = Path("/sys/fs/fuse/connections")
        ours = not os.path.ismount(ctl)
        if ours:
            run("mount", "-t", "fusectl", "fusectl", str(ctl))
        try:
            conn = ctl / str(os.minor(dev)) / "max_background"
            assert conn.read_text().strip() == "64"
        finally:
            if ours:
                run("umount", str(ctl))
    andy = populated["andy"]
    got = subprocess.run(["cat", str(m.path / "artifacts" / andy.id / "data/big.bin")],
                         capture_output=True, check=True).stdout
    assert got == populated["big"]


def test_scanning_small_files_reads_the_right_bytes(store_env, lake_mount, tmp_path):
    """`cat` of one small file per artifact across 30 artifacts (what scan read-ahead
    prefetches), in glob order and in the reverse: every byte right, also a second time."""
    lake = Lake(Settings.load())
    expected = {}
    for i in range(30):
        f = tmp_path / f"s{i}" / "m.json"
        f.parent.mkdir()
        f.write_bytes(b'{"run": %d, "loss": %s}\n' % (i, os.urandom(6).hex().encode()))
        expected[lake.save([str(f)], based_on=[]).id] = f.read_bytes()
    lake.close()
    ids = sorted(expected)
    for args in ((), ("--scan-ahead", "0")):
        m = lake_mount(*args)
        _cat_scans(m, ids, expected)
        m.unmount()


def test_the_seeds_untagged_dataset_is_under_its_type(store_env, lake_mount, tmp_path,
                                                      monkeypatch):
    """The seed's exact save (no tags): ``by-tag/`` lists the type, ``by-tag/dataset_list/``
    and Brenda's ``search/<query>/`` list the artifact, a neighbour stays out."""
    import elliptio as eio

    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.txt").write_text("a,b\n1,2\n")
    (tmp_path / "test.txt").write_text("a,b\n3,4\n")
    a = eio.save(["train.txt", "test.txt"],
                 info={"type": "dataset_list", "stratification": "new-cool-method"})
    other = eio.save(["train.txt"], info={"type": "model"}, tags=["v1"])
    eio.api.close_default_lake()
    m = lake_mount()
    assert sorted(os.listdir(m.path / "by-tag")) == ["dataset_list", "model", "v1"]
    assert os.listdir(m.path / "by-tag/dataset_list") == [a.id]
    assert os.readlink(m.path / "by-tag/dataset_list" / a.id) == f"../../artifacts/{a.id}"
    assert os.listdir(m.path / "search/user=andy,since=10d,file=*.txt,tag=*dataset*") == [a.id]
    assert sorted(os.listdir(m.path / "search/tag=*")) == sorted([a.id, other.id])
    assert os.listdir(m.path / "by-tag/model") == [other.id]
    got = run("cat", str(m.path / "by-tag/dataset_list" / a.id / "train.txt")).stdout
    assert got == "a,b\n1,2\n"


def _cat_scans(m, ids: list[str], expected: dict[str, bytes]) -> None:
    glob = subprocess.run(f"cat {m.path}/artifacts/*/m.json", shell=True,
                          capture_output=True, check=True).stdout
    assert glob == b"".join(expected[i] for i in ids)
    paths = [str(m.path / "artifacts" / i / "m.json") for i in reversed(ids)]
    for _ in range(2):
        out = subprocess.run(["cat", *paths], capture_output=True, check=True).stdout
        assert out == b"".join(expected[i] for i in reversed(ids))


def test_sigterm_unmounts_cleanly(populated, lake_mount):
    m = lake_mount()
    assert sorted(os.listdir(m.path / "by-user")) == ["andy", "brenda"]
    m.proc.send_signal(signal.SIGTERM)
    assert m.proc.wait(timeout=15) == 0
    m.unmounted = True
    assert not os.path.ismount(m.path)
    assert "SIGTERM: unmounting" in m.log_text()


def test_readlog_records_the_readers_session(populated, lake_mount):
    m = lake_mount()
    andy = populated["andy"]
    f = m.path / "by-user/andy" / andy.id / "data/raw/x.txt"
    # a new session whose leader stays alive while we look its scope up
    reader = subprocess.Popen(["sh", "-c", f"cat '{f}' > /dev/null && echo done && sleep 30"],
                              start_new_session=True, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout is not None and reader.stdout.readline().strip() == "done"
        log = ReadLog(m.env["ELLIPTIO_READLOG"])
        assert log.artifacts_for(scope_for(reader.pid, os.getuid(), "session")) == [andy.id]
        # our own session read nothing
        assert log.artifacts_for(scope_for(os.getpid(), os.getuid(), "session")) == []
        log.close()
    finally:
        reader.kill()  # by pid: our child
        reader.wait()
        assert reader.stdout is not None
        reader.stdout.close()


def test_daemon_mode_and_start_errors(populated, store_env, tmp_path):
    env = {k: v for k, v in os.environ.items()}
    mnt = tmp_path / "bg"
    mnt.mkdir()
    cmd = [sys.executable, "-m", "elliptiofs.cli"]
    bad = subprocess.run([*cmd, str(tmp_path / "missing")], env=env, capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 11
    assert bad.stderr.strip() == f"elliptiofs: mountpoint {tmp_path / 'missing'} does not exist"
    bad = subprocess.run([*cmd, str(mnt)], capture_output=True, text=True, timeout=30,
                         env={**env, "ELLIPTIO_CATALOGUE": "nosuch://x"})
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert not os.path.ismount(mnt)
    for opts in (["--scan-ahead", "-1"], ["--cache-mb", "0"], ["--scan-ahead", "many"]):
        bad = subprocess.run([*cmd, str(mnt), *opts], capture_output=True, text=True,
                             timeout=30, env=env)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
        assert bad.stderr.strip().splitlines()[-1].startswith("elliptiofs: error:")
    assert not os.path.ismount(mnt)

    res = subprocess.run([*cmd, str(mnt), "--log", str(tmp_path / "bg.log")], env=env,
                         capture_output=True, text=True, timeout=30)
    try:
        assert res.returncode == 0, res.stderr
        assert os.path.ismount(mnt)
        mounts = Path("/proc/mounts").read_text()
        assert f"elliptiofs {mnt} fuse.elliptiofs " in mounts
        assert sorted(os.listdir(mnt / "by-user")) == ["andy", "brenda"]
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
    wait_for_unmounting(tmp_path / "bg.log")
    assert not os.path.ismount(mnt)


def test_a_relative_mountpoint_is_below_the_working_directory(populated, store_env, tmp_path):
    """``elliptiofs mnt`` from some directory mounts there (not on /mnt: the path was
    resolved after the daemon changed directory), and a second ``elliptiofs mnt`` says in
    one line, with the absolute path, that it is mounted already."""
    env = {k: v for k, v in os.environ.items()}
    work = tmp_path / "work"
    name = f"mnt-{os.getpid()}-{time.monotonic_ns()}"  # nothing of that name under /
    (work / name).mkdir(parents=True)
    mnt = work / name
    cmd = [str(Path(sys.executable).parent / "elliptiofs")]  # the installed command
    first = subprocess.run([*cmd, name, "--log", "bg.log"], cwd=work, env=env,
                           capture_output=True, text=True, timeout=30)
    try:
        assert first.returncode == 0, first.stderr
        assert os.path.ismount(mnt) and not os.path.exists(f"/{name}")
        assert sorted(os.listdir(mnt / "by-user")) == ["andy", "brenda"]
        assert (work / "bg.log").exists()  # --log relative to the caller's directory too
        again = subprocess.run([*cmd, name], cwd=work, env=env, capture_output=True,
                               text=True, timeout=30)
        assert again.returncode == 11 and again.stderr.count("\n") == 1, again.stderr
        assert again.stderr.startswith(f"elliptiofs: mountpoint {mnt} is already a mount "
                                       "point"), again.stderr
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
    wait_for_unmounting(work / "bg.log")
    missing = subprocess.run([*cmd, "nothing-here"], cwd=work, env=env, capture_output=True,
                             text=True, timeout=30)
    assert missing.returncode == 11
    assert missing.stderr == f"elliptiofs: mountpoint {work / 'nothing-here'} does not exist\n"


@pytest.mark.parametrize("conf, warned", [
    (None, False),  # no updatedb installed: nothing to say
    ('PRUNE_BIND_MOUNTS="yes"\nPRUNEFS="NFS fuse.sshfs tmpfs"\nPRUNEPATHS="/tmp /var/spool"\n',
     True),
    ('PRUNEFS="NFS fuse.sshfs FUSE.ELLIPTIOFS"\n', False),  # updatedb ignores case
    ("PRUNEFS = 'fuse.elliptiofs'\n", False),
    ('PRUNEFS="NFS"\nPRUNEPATHS="/tmp /mnt"\n', False),  # a directory above the mount
    ('PRUNEFS="NFS"\nPRUNEPATHS="/mnt/eio/lake"\n', False),  # the mount itself
    ('PRUNEFS="NFS"\nPRUNEPATHS="/mnt/eio2 /mn"\n', True),  # neither: prefixes of names
    ('# PRUNEFS="fuse.elliptiofs"\n', True),  # a comment
])
def test_the_daemon_warns_when_updatedb_would_crawl_the_lake(tmp_path, conf, warned):
    from elliptiofs.kernel import indexer_warning

    path = tmp_path / "updatedb.conf"
    if conf is not None:
        path.write_text(conf)
    warning = indexer_warning("/mnt/eio/lake", str(path))
    assert (warning is not None) == warned
    if warned:
        assert "PRUNEFS" in warning and "fuse.elliptiofs" in warning and str(path) in warning


def test_the_main_job_shows_the_mount(tmp_path):
    """`bash scripts/demo.sh` (the README's first command; its set-up is tested in
    test_t0_environment) mounts the demo lake, reads through it, saves through outbox/ an
    artifact based on what that shell read, shows its lineage, and unmounts."""
    root = Path(__file__).resolve().parent.parent
    demo, mnt = tmp_path / "demo", tmp_path / "demo" / "mnt"
    env = {**os.environ, "DEMO_DIR": str(demo), "DEMO_SETUP": "no",
           "ELLIPTIO_VENV": sys.prefix}
    try:
        res = subprocess.run(["bash", "scripts/demo.sh"], cwd=root, env=env,
                             capture_output=True, text=True, timeout=240)
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    andy = next(line.split("=", 1)[1] for line in out.splitlines()
                if line.startswith("ANDY_ID="))
    listing = out.split(f"$ ls {mnt}/by-user/andy/\n", 1)[1].splitlines()
    assert listing[0] == andy
    assert f"$ ls {mnt}/artifacts/{andy}/\ntest.txt\ntrain.txt\n" in out
    new = out.split("../artifacts/", 1)[1].split()[0]
    lineage = out.split(f"== eio lineage {new}", 1)[1]
    assert "based on:" in lineage and andy in lineage
    assert out.rstrip().endswith(f"== unmounted {mnt}") and not os.path.ismount(mnt)
    lake = Lake(Settings.load(store=f"file://{demo}/store",
                              catalogue=f"sqlite:///{demo}/catalogue.sqlite"))
    try:
        saved = lake.load(new)
        assert saved.based_on == [andy]
        assert saved.files[next(iter(saved.files))].read_text().strip() == "3"
    finally:
        lake.close()
