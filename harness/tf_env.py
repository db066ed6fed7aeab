"""The environment a TensorFlow process of the harness starts with.

TensorFlow reads these variables once, when it creates its first device, so they are set before
any op runs: by `harness.cli.main` for the driver (its refit and export run in it) and through
`ray_execution`'s worker environment for every trial worker. A variable the user set already
wins (the driver and a local Ray's workers inherit it; a cluster's workers are sent it).

TF_CPU_ALLOCATOR_USE_BFC: TensorFlow's CPU allocator is plain `malloc` by default, and glibc maps
every block over 32 MB fresh from the kernel and unmaps it when it is freed. A text model's
200,000 x 128 embedding (100 MB) is read, densified and updated several times a training step,
so each step faulted in about 500 MB of zeroed pages: on 2 slow cores, 136,000 page faults and
391 ms of kernel time in a 730 ms step, and the shipped IMDB job's trials ran out of time.
TensorFlow's best-fit-with-coalescing allocator (the one its GPU builds use for host memory)
keeps freed blocks for the next step: 294 ms a step, no page faults. Batch-norm CNNs' steps
moved by a few percent either way (benchmarks/allocator.py; docs/BENCHMARKS.md, session 24). It
grows as needed (to TensorFlow's default 64 GB cap, `TF_CPU_BFC_MEM_LIMIT_IN_MB`) and keeps what
it took; a warm worker's RSS stays flat across trials (0.14 MB a trial, tutorial CNN).
"""

from __future__ import annotations

import os

DEFAULTS = {"TF_CPU_ALLOCATOR_USE_BFC": "true"}


def defaults() -> dict[str, str]:
    """The variables above, with this process's own values where it has them."""
    return {name: os.environ.get(name, value) for name, value in DEFAULTS.items()}


def apply() -> None:
    """Sets the variables this process does not have yet; call before TensorFlow runs an op."""
    os.environ.update(defaults())
