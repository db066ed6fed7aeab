"""Keeps TensorFlow's C++ log lines off the terminal; everything else on stderr passes unchanged.

TensorFlow, XLA and absl write start-up lines ("oneDNN custom operations are on", "This
TensorFlow binary is optimized to use ...") from C++ straight to file descriptor 2, whatever
TF_CPP_MIN_LOG_LEVEL says, so no Python-level setting can stop them. `install()` routes fd 2
through a pipe into a small filter process that drops lines in absl's log format and forwards
the rest byte for byte.

A process rather than a thread: when the command dies hard (abort, segfault, SIGKILL) a thread
dies with it and the last lines it had not forwarded (often the explanation) are lost, while
the filter process drains the pipe until every writer is gone.

A leaf module (standard library only): the filter process runs this file as its script.
"""

from __future__ import annotations

import os
import re
import select
import sys
from typing import Any

_ANSI = re.compile(rb"\x1b\[[0-9;]*m")
# Ray forwards a worker's lines to the driver behind "(name pid=123, ip=10.0.0.2) ".
_RAY_PREFIX = rb"(?:\([^()\n]*pid=\d+[^()\n]*\) )?"
# absl's header: severity, MMDD hh:mm:ss.micros (before absl is initialised the seconds are
# the Unix time: "I0000 00:00:1795528428.192052"), thread id, file:line]. Fatal (F) lines are
# kept: an abort follows them and they are its only explanation.
_TF_LOG = re.compile(_RAY_PREFIX + rb"[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]")
_ABSL_PREAMBLE = re.compile(
    _RAY_PREFIX + rb"WARNING: All log messages before absl::InitializeLog\(\) is called"
)
# Ray's C++ core logs ("[2026-11-24 17:00:00,123 E 4242 4242] gcs_client.cc:88: ..."), e.g. a
# screen of InvalidAuthToken retries before the harness's own one-line answer.
_RAY_CORE_LOG = re.compile(
    _RAY_PREFIX + rb"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [IWE] \d+ \d+\] \S+\.cc:\d+:"
)
# cpu_feature_guard's message spans two lines; the second has no header of its own.
_CONTINUATION = re.compile(_RAY_PREFIX + rb"To enable the following instructions:")
# A partial line (a prompt, a progress bar) waits this long for its end, then is forwarded.
_PARTIAL_WAIT_S = 0.05
_MAX_PENDING = 1 << 16

_installed: dict[str, Any] = {}


def install() -> None:
    """Filters this process's stderr (fd 2, so C++ writers and child processes too).

    Call once, before TensorFlow is imported. Does nothing when fd 2 is closed or the filter
    cannot start: unfiltered output is better than none.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quiets what TF does let us quiet
    # absl's Python logger (TFDS: "Variant folder ... has no dataset_info.json" while probing
    # a data directory): the harness answers in its own words.
    import logging

    logging.getLogger("absl").setLevel(logging.ERROR)
    if _installed:
        return
    try:
        _start()
    except OSError:
        pass


def _start() -> None:
    # Imported here: the filter process, which runs this file, needs none of them.
    import atexit
    import secrets
    import subprocess

    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    ack_read, ack_write = os.pipe()
    token = secrets.token_hex(8)
    process = subprocess.Popen(
        [sys.executable, "-I", "-S", os.path.abspath(__file__), token, str(ack_write)],
        stdin=read_end,
        stdout=original,
        stderr=original,
        pass_fds=(ack_write,),
        # Its own session: Ctrl-C and group signals must not kill it before it has forwarded
        # the command's last words; it exits when the pipe closes.
        start_new_session=True,
    )
    os.dup2(write_end, 2)
    for fd in (read_end, write_end, ack_write):
        os.close(fd)
    _installed.update(
        original=original, ack=ack_read, token=token, process=process, pid=os.getpid()
    )
    atexit.register(_finish)


def _finish() -> None:
    """Waits until the filter has forwarded everything written so far, then restores fd 2.

    A marker line, not the pipe's end: child processes (a local Ray) may still hold the pipe.
    """
    if os.getpid() != _installed["pid"]:
        return  # a forked child exiting: the filter belongs to its parent
    try:
        sys.stderr.flush()
        os.write(2, f"{_marker(_installed['token'])}\n".encode())
        select.select([_installed["ack"]], [], [], 2.0)
    except (OSError, ValueError):
        pass  # stderr already closed or broken: nothing left to order
    os.dup2(_installed["original"], 2)


def _marker(token: str) -> str:
    return f"\0harness-quiet-flushed {token}"


def is_tf_log(line: bytes, after_dropped: bool = False) -> bool:
    """Whether `line` (without its newline) is a TensorFlow/absl C++ log line.

    `after_dropped`: the previous line was one, so a header-less continuation counts too.
    """
    plain = _ANSI.sub(b"", line)
    if _TF_LOG.match(plain) or _ABSL_PREAMBLE.match(plain) or _RAY_CORE_LOG.match(plain):
        return True
    return after_dropped and _CONTINUATION.match(plain) is not None


class _Filter:
    """Forwards lines from `source` to `sink`, dropping TF log lines; acks the exit marker."""

    def __init__(self, source: int, sink: int, marker: bytes, ack: int):
        self.source, self.sink, self.marker, self.ack = source, sink, marker, ack
        self.pending = b""
        self.dropped = False
        self.sink_broken = False

    def run(self) -> None:
        while True:
            wait = _PARTIAL_WAIT_S if self.pending else None
            if not select.select([self.source], [], [], wait)[0]:
                self._write(self.pending)  # no newline coming soon: not a TF line
                self.pending = b""
                continue
            chunk = os.read(self.source, 65536)
            if not chunk:
                break
            *lines, self.pending = (self.pending + chunk).split(b"\n")
            for line in lines:
                self._line(line)
            if len(self.pending) > _MAX_PENDING:  # a stream without newlines: pass it on
                self._write(self.pending)
                self.pending = b""
        self._write(self.pending)

    def _line(self, line: bytes) -> None:
        if line.endswith(self.marker):  # after a partial line the command left unfinished
            self._write(line[: -len(self.marker)])
            self._acknowledge()
        elif is_tf_log(line, self.dropped):
            self.dropped = True
        else:
            self.dropped = False
            self._write(line + b"\n")

    def _acknowledge(self) -> None:
        if self.ack >= 0:
            try:
                os.write(self.ack, b"1")
                os.close(self.ack)
            except OSError:
                pass  # the command is already gone
            self.ack = -1

    def _write(self, data: bytes) -> None:
        # Keep draining after the reader of our stderr went away, so writers never block.
        while data and not self.sink_broken:
            try:
                data = data[os.write(self.sink, data) :]
            except OSError:
                self.sink_broken = True


def _main(token: str, ack: str) -> None:
    _Filter(0, 1, _marker(token).encode(), int(ack)).run()


if __name__ == "__main__":
    _main(*sys.argv[1:3])
