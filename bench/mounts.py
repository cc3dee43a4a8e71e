"""The processes and mounts a benchmark starts, stopped by pid and unmounted, also when the
benchmark fails (bench_fuse.py and bench_outbox.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

#: seconds a daemon may take to exit after its unmount (the outbox finishes a commit under
#: way) before it is sent SIGTERM
EXIT_GRACE = 60


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.mounts: list[Path] = []

    def start(self, cmd: list[str], log: Path, env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        out = open(log, "ab")
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        out.close()
        self.procs.append(p)
        return p

    def mount(self, cmd: list[str], mnt: Path, log: Path, env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        mnt.mkdir(parents=True, exist_ok=True)
        p = self.start(cmd, log, env)
        self.mounts.append(mnt)
        deadline = time.monotonic() + 30
        while not os.path.ismount(mnt):
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{cmd[0]} did not mount: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        return p

    def unmount(self, mnt: Path, p: subprocess.Popen[bytes]) -> None:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
        if os.path.ismount(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True)
        with contextlib.suppress(ValueError):
            self.mounts.remove(mnt)
        self.stop(p, grace=EXIT_GRACE)

    def stop(self, p: subprocess.Popen[bytes], grace: float = 0) -> None:
        if grace:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=grace)
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        with contextlib.suppress(ValueError):
            self.procs.remove(p)

    def close(self) -> None:
        for mnt in list(self.mounts):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True)
        for p in reversed(list(self.procs)):
            self.stop(p)
