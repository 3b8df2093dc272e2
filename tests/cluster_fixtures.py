"""A real Dask cluster on 127.0.0.1: the `dask scheduler` and `dask worker` programs.

Each worker runs in its own working directory with its own HOME and TMPDIR (nothing shared
with the driver or the other workers but the scheduler address and the object store); its
environment is the S3 one it is given plus PYTHONPATH to this checkout (the code, as
`pip install mosaic-assembler[dask,s3]` would provide on a real cluster).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DASK = str(Path(sys.executable).parent / "dask")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def isolated_env(base: dict[str, str], home: Path) -> dict[str, str]:
    """A process environment of its own: HOME, TMPDIR and cwd under `home`, the given S3 env."""
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL")}
    return {
        **keep,
        **base,
        "HOME": str(home),
        "TMPDIR": str(home / "tmp"),
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    }


class DaskCluster:
    """`dask scheduler` and `dask worker` processes; `address` is the scheduler's."""

    def __init__(self, n_workers: int, env: dict[str, str], root: Path | None = None):
        self.root = Path(root or tempfile.mkdtemp(prefix="dask-cluster-"))
        self.env = env
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        home = self.root / "scheduler"
        self.scheduler = self._start(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
             "--no-dashboard"], home,
        )  # fmt: skip
        self.workers: list[subprocess.Popen] = []
        try:
            self._wait_port()
            for i in range(n_workers):
                self.add_worker(i)
            self.wait_for_workers(n_workers)
        except Exception:
            self.stop()
            raise

    def _start(self, args: list[str], home: Path) -> subprocess.Popen:
        home.mkdir(parents=True, exist_ok=True)
        log = open(home / "log.txt", "wb")  # noqa: SIM115
        return subprocess.Popen(
            args, cwd=home, env=isolated_env(self.env, home), stdout=log, stderr=log,
            start_new_session=True,  # its own process group: killed whole (nanny + worker)
        )  # fmt: skip

    def add_worker(self, i: int) -> subprocess.Popen:
        """Start worker `i` (one process, one thread) in its own directory."""
        home = self.root / f"worker-{i}"
        proc = self._start(
            [DASK, "worker", self.address, "--nworkers", "1", "--nthreads", "1",
             "--host", "127.0.0.1", "--no-dashboard", "--name", f"w{i}",
             "--local-directory", str(home / "dask")], home,
        )  # fmt: skip
        self.workers.append(proc)
        return proc

    def _wait_port(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.scheduler.poll() is not None:
                raise RuntimeError("dask scheduler exited")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("dask scheduler did not start")

    def wait_for_workers(self, n: int, timeout: float = 120) -> None:
        """Block until `n` workers are connected."""
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(n, timeout=timeout)

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker `i` (its nanny and its worker process)."""
        try:
            os.killpg(self.workers[i].pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.workers[i].wait()

    def peak_rss_kb(self) -> dict[str, int]:
        """Peak RSS (VmHWM, kB) of each live worker (its largest process)."""
        out: dict[str, int] = {}
        for i, proc in enumerate(self.workers):
            # the largest process of the group: the worker (its nanny is small)
            out[f"w{i}"] = max((_vm_hwm(pid) for pid in _group_pids(proc.pid)), default=0)
        return out

    def stop(self) -> None:
        """Terminate every process (SIGTERM, then SIGKILL)."""
        for proc in [*self.workers, self.scheduler]:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for proc in [*self.workers, self.scheduler]:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def _vm_hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
