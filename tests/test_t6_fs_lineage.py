"""Reads through a real mount become ``based_on`` of library and CLI saves
(elliptio/mountreads.py, elliptiofs/readsock.py): real processes in their own sessions
(``setsid``) read through the mount and then save; the daemon also runs as another user.
Every mount is unmounted and must exit 0 (tests/fixtures/fuse.py).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from elliptio import Lake, Settings, mountreads
from tests.fixtures.fuse import MOUNT_TIMEOUT, Mount, daemon_env

pytestmark = pytest.mark.fuse

VENV_BIN = str(Path(sys.executable).parent)
NOBODY = 65534
PANDAS = """
import sys
import pandas as pd
import elliptio as eio
df = pd.read_csv(sys.argv[1])
assert len(df) == 2, df
open("m.txt", "w").write(str(df.a.sum()))
print(eio.save(["m.txt"], info={"type": "model"}).id)
"""


def in_session(script: str, env: dict[str, str], cwd: Path) -> str:
    """*script* run by bash in a new session; its stdout (it must succeed)."""
    res = subprocess.run(["setsid", "-w", "bash", "-c", script], env=env, cwd=cwd,
                         text=True, capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


def saved_id(out: str) -> str:
    m = re.search(r"\b([0-9a-z]{26})\b", out)
    assert m, out
    return m.group(1)


@pytest.fixture
def dataset(lake_env: dict[str, str], tmp_path: Path) -> tuple[str, str]:
    """Two of andy's artifacts with a train.csv each."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.csv").write_text("a,b\n1,2\n3,4\n")
    with Lake(Settings.load()) as lake:
        a = lake.save([str(src / "train.csv")], info={"type": "dataset"}, based_on=[])
        b = lake.save([str(src / "train.csv")], info={"type": "dataset"}, based_on=[])
    return a.id, b.id


def client_env(lake_env: dict[str, str], m: Mount) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELLIPTIO_")}
    env.update(lake_env)
    env["ELLIPTIO_READLOG"] = m.env["ELLIPTIO_READLOG"]
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    return env


def based_on(aid: str) -> list[str]:
    with Lake(Settings.load()) as lake:
        a = lake.get(aid)
    assert a is not None
    return list(a.based_on)


def test_reads_through_the_mount_are_parents_of_cli_and_library_saves(
        dataset, lake_env, mount_factory, tmp_path):
    a, b = dataset
    m = mount_factory(lake_env)
    env = client_env(lake_env, m)
    work = tmp_path / "work"
    work.mkdir()
    (work / "m.txt").write_text("model\n")
    art = m.path / "artifacts"

    # a shell session cats A's file (and A's metadata, which is no use), then eio save
    out = in_session(f"cat {art}/{a}/train.csv >/dev/null; "
                     f"cat {art}/{b}/.eio/metadata.yaml >/dev/null; eio save m.txt",
                     env, work)
    assert based_on(saved_id(out)) == [a]
    # first-read order across two artifacts; eio.load's own record comes first
    out = in_session(f"cat {art}/{b}/train.csv {art}/{a}/train.csv >/dev/null; "
                     f"python -c 'import elliptio as eio; eio.load(\"{b}\"); "
                     f"print(eio.save([\"m.txt\"]).id)'", env, work)
    assert based_on(saved_id(out)) == [b, a]
    # pandas through by-user/, then eio.save in the same process
    (work / "fit.py").write_text(PANDAS)
    out = in_session(f"python fit.py {m.path}/by-user/andy/{a}/train.csv", env, work)
    assert based_on(saved_id(out)) == [a]
    # another session, which read nothing, gets nothing; nor does this test's own
    out = in_session("eio save m.txt", env, work)
    assert based_on(saved_id(out)) == []
    assert mountreads.mount_reads(lake_env["ELLIPTIO_STORE"]) == []
    # an explicit based_on wins, [] included
    out = in_session(f"cat {art}/{a}/train.csv >/dev/null; eio save --no-based-on m.txt",
                     env, work)
    assert based_on(saved_id(out)) == []
    out = in_session(f"cat {art}/{a}/train.csv >/dev/null; "
                     f"eio save --based-on {b} m.txt", env, work)
    assert based_on(saved_id(out)) == [b]
    out = in_session(f"cat {art}/{a}/train.csv >/dev/null; python -c 'import elliptio as "
                     f"eio; print(eio.save([\"m.txt\"], based_on=[]).id)'", env, work)
    assert based_on(saved_id(out)) == []
    # reads after the question are not in the answer; reads of a mount of another lake
    # (another store URL) do not count
    assert in_session(f"cat {art}/{a}/train.csv >/dev/null; python -c 'from elliptio "
                      f"import mountreads as r; print(r.mount_reads(\"file:///elsewhere\"))'",
                      env, work).strip() == "[]"
    # the read log is the daemon's alone
    assert stat.S_IMODE(os.stat(m.env["ELLIPTIO_READLOG"]).st_mode) == 0o600


def test_no_mount_a_dead_mount_and_a_hanging_daemon(lake_env, tmp_path, monkeypatch,
                                                   caplog):
    readlog = tmp_path / "rl/readlog.sqlite"
    monkeypatch.setenv("ELLIPTIO_READLOG", str(readlog))
    store = lake_env["ELLIPTIO_STORE"]
    (tmp_path / "m.txt").write_text("x\n")
    with Lake(Settings.load()) as lake:
        # no mount: nothing, quickly
        t0 = time.perf_counter()
        for _ in range(100):
            assert mountreads.mount_reads(store) == []
        assert (time.perf_counter() - t0) / 100 < 0.002
        assert lake.save([str(tmp_path / "m.txt")]).based_on == []
        sockets = Path(mountreads.beside(str(readlog)))
        sockets.mkdir(parents=True)
        # a killed daemon's socket that nobody listens on is no mount, and no warning
        dead = socket.socket(socket.AF_UNIX)
        dead.bind(str(sockets / "dead.sock"))
        dead.close()
        with caplog.at_level(logging.WARNING, "elliptio.mountreads"):
            assert lake.save([str(tmp_path / "m.txt")]).based_on == []
        assert caplog.records == []
        # a daemon that accepts and never answers costs the timeout and one WARNING
        hung = socket.socket(socket.AF_UNIX)
        hung.bind(str(sockets / "hung.sock"))
        hung.listen(1)
        try:
            monkeypatch.setattr(mountreads, "TIMEOUT", 0.3)
            t0 = time.perf_counter()
            with caplog.at_level(logging.WARNING, "elliptio.mountreads"):
                assert lake.save([str(tmp_path / "m.txt")]).based_on == []
            assert time.perf_counter() - t0 < 3
            assert any("did not say within" in r.getMessage() for r in caplog.records)
        finally:
            hung.close()
        # sockets in a directory others may write are not asked
        caplog.clear()
        sockets.chmod(0o777)
        with caplog.at_level(logging.WARNING, "elliptio.mountreads"):
            assert mountreads.mount_reads(store) == []
        assert any("others may write" in r.getMessage() for r in caplog.records)


# -- the daemon as another user ------------------------------------------------------------
def wait_in_proc_mounts(m: Mount) -> None:
    """Until *m* is in /proc/mounts (root cannot stat a mount without allow_other)."""
    deadline = time.monotonic() + MOUNT_TIMEOUT
    while f" {m.path} fuse.elliptiofs " not in Path("/proc/mounts").read_text():
        if m.proc.poll() is not None or time.monotonic() > deadline:
            m.unmount()
            pytest.fail(f"the mount did not come up; log:\n{m.log_text()}")
        time.sleep(0.05)


def as_uid(uid: int, *cmd: str, caps: bool = False) -> list[str]:
    """*cmd* run as *uid* (setpriv; no passwd entry needed). *caps*: keep
    CAP_DAC_READ_SEARCH, so the interpreter (under /root here) can be run."""
    extra = ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"] if caps \
        else []
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *extra,
            "--", *cmd]


@pytest.fixture
def shared_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                ) -> Iterator[tuple[Path, dict[str, str]]]:
    """A lake in a directory another uid can use (tmp_path is root's only)."""
    d = Path(tempfile.mkdtemp(prefix="eio-lin-", dir="/tmp"))
    d.chmod(0o755)
    env = {"ELLIPTIO_STORE": f"file://{d}/lake/store",
           "ELLIPTIO_CATALOGUE": f"sqlite:///{d}/lake/catalogue.sqlite",
           "ELLIPTIO_USER": "andy"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    yield d, env
    shutil.rmtree(d, ignore_errors=True)


def test_a_daemon_running_as_another_user_answers_each_session_about_itself(
        shared_lake, tmp_path):
    d, lake_env = shared_lake
    (d / "src").mkdir()
    (d / "src/train.csv").write_text("a,b\n1,2\n3,4\n")
    with Lake(Settings.load()) as lake:
        a = lake.save([str(d / "src/train.csv")], based_on=[]).id
    home, mnt = d / "home", d / "mnt"
    home.mkdir()
    mnt.mkdir()
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(d / "lake"), str(home),
                    str(mnt)], check=True)
    env = daemon_env(lake_env, home)
    log = d / "mnt.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(as_uid(NOBODY, sys.executable, "-m", "elliptiofs.cli",
                                       str(mnt), "--foreground", caps=True),
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    m = Mount(mnt, proc, env, log)
    try:
        wait_in_proc_mounts(m)
        readlog = Path(env["ELLIPTIO_READLOG"])
        st = os.stat(readlog)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (NOBODY, 0o600)
        # another uid cannot read the log itself
        res = subprocess.run(as_uid(12345, "cat", str(readlog)), capture_output=True)
        assert res.returncode != 0 and b"Permission denied" in res.stderr
        # the mount is the daemon user's (no allow_other): the reader runs as that uid,
        # the saver as root, both in one session; the daemon tells root what it read
        work = tmp_path / "work"
        work.mkdir()
        (work / "m.txt").write_text("m\n")
        cenv = client_env(lake_env, m)
        cat = " ".join(as_uid(NOBODY, "cat", f"{mnt}/artifacts/{a}/train.csv"))
        out = in_session(f"{cat} >/dev/null; eio save m.txt", cenv, work)
        assert based_on(saved_id(out)) == [a]
        # other sessions learn nothing: root's, and one of the reader's own uid
        assert in_session("eio save m.txt", cenv, work) and \
            mountreads.mount_reads(lake_env["ELLIPTIO_STORE"]) == []
        ask = " ".join(as_uid(NOBODY, sys.executable, "-c",
                              "'from elliptio import mountreads as r; import os; "
                              "print(r.mount_reads(os.environ[\"ELLIPTIO_STORE\"]))'",
                              caps=True))
        assert in_session(ask, cenv, work).strip() == "[]"
        assert in_session(f"{cat} >/dev/null; {ask}", cenv, work).strip() == f"['{a}']"
    finally:
        m.unmount()


def test_the_asker_uid_check_reads_the_status_file_only_when_the_owner_differs():
    """readsock.runs_as: a process's /proc/<pid> owner answers for a dumpable process; a
    process the kernel shows as root (not dumpable) is still told apart by its status
    file; another user's process, or a pid that is gone, is nobody's asker."""
    from elliptiofs import readsock

    assert readsock.runs_as(os.getpid(), os.geteuid())
    assert not readsock.runs_as(os.getpid(), os.geteuid() + 1)
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert not readsock.runs_as(gone.pid, os.geteuid())
    if os.geteuid() != 0:
        return  # the rest needs another user's processes
    script = ("import ctypes, os, sys, time; os.setuid(%d); "
              "ctypes.CDLL(None).prctl(4, int(sys.argv[1]), 0, 0, 0); "  # PR_SET_DUMPABLE
              "print('ready', flush=True); time.sleep(30)" % NOBODY)
    for dumpable in (1, 0):
        p = subprocess.Popen([sys.executable, "-c", script, str(dumpable)],
                             stdout=subprocess.PIPE)
        try:
            assert p.stdout is not None and p.stdout.readline() == b"ready\n"
            # Linux shows a process that is not dumpable as root's (the status file
            # decides then); some kernels (gVisor) show its euid either way
            assert os.stat(f"/proc/{p.pid}").st_uid in ((NOBODY,) if dumpable else (0, NOBODY))
            assert readsock.runs_as(p.pid, NOBODY)
            assert not readsock.runs_as(p.pid, 12345)
        finally:
            p.kill()
            p.wait()
            if p.stdout is not None:
                p.stdout.close()
