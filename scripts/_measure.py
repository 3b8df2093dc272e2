"""Measure a child process: wall time, peak RSS and CPU time, without fork artefacts.

`ru_maxrss` survives exec, so a child forked from a large parent (a benchmark that just
generated gigabytes of test data) reports the parent's RSS. The command therefore runs under a
tiny launcher process, and the launcher reports the grandchild's own rusage.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

_LAUNCHER = r"""
import json, os, subprocess, sys
p = subprocess.Popen(sys.argv[1:])
_, status, ru = os.wait4(p.pid, 0)
sys.stderr.write("\n@@rusage " + json.dumps({
    "rc": os.waitstatus_to_exitcode(status), "maxrss": ru.ru_maxrss,
    "cpu": ru.ru_utime + ru.ru_stime}) + "\n")
"""


def measure(cmd: list[str]) -> tuple[float, float, float, str, str]:
    """Run cmd; (wall s, peak RSS MB, user+sys CPU s, stdout, stderr). Raises on failure."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _LAUNCHER, *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    head, _, tail = r.stderr.rpartition("\n@@rusage ")
    usage = json.loads(tail)
    if usage["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd[:5])} … failed: {head.strip()[-800:]}")
    return wall, usage["maxrss"] / 1024, usage["cpu"], r.stdout, head
