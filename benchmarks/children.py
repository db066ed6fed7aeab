"""Running `harness tune` from a benchmark so that stopping the benchmark stops the job too.

A benchmark runs the harness as a child process. A SIGTERM sent to the benchmark alone (a
scheduler's stop, `kill`, `pkill -f time_to_accuracy.py`) would leave that job training with
nobody to read its results, and a rerun into the same directory would share it with a live
driver. Ctrl-C in a terminal reaches both already (one process group).
"""

from __future__ import annotations

import signal
import subprocess


def run(command: list[str], check: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run(command, check=check, **kwargs)` without output capture, except that a
    SIGTERM to this process is passed on to the child (the harness then saves its state and
    exits 130) and, once the child has exited, ends this process with exit code 130."""
    stopped: list[int] = []
    with subprocess.Popen(command, **kwargs) as child:

        def forward(signum, frame):
            stopped.append(signum)
            child.send_signal(signum)

        previous = signal.signal(signal.SIGTERM, forward)
        try:
            code = child.wait()
        finally:
            signal.signal(signal.SIGTERM, previous)
    if stopped:
        raise SystemExit(130)
    if check and code:
        raise subprocess.CalledProcessError(code, command)
    return subprocess.CompletedProcess(command, code)
