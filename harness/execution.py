"""Where trials run: Ray worker processes, on a local Ray or an existing cluster.

Ray does placement (declared CPUs/GPUs per trial), process lifetime (`max_calls` trials per
worker process, then a fresh one) and retries of trials whose worker died (`max_retries`).
The driver only submits trial requests and waits for results.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

import ray

from harness.errors import UserError
from harness.job import ResourcesSpec
from harness.trial_runner import run_trial

# Quiet TensorFlow's C++ start-up banners in every worker; keep the driver's cwd importable so a
# job can name its own `package.module:HyperModel`.
WORKER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}


class RayExecutor:
    """Submits `run_trial` requests as Ray tasks with the job's per-trial resources."""

    def __init__(self, resources: ResourcesSpec, address: str | None = None):
        self.resources = resources
        self.address = address or resources.address or os.environ.get("RAY_ADDRESS")
        self._started_ray = False
        self._remote = None

    def __enter__(self) -> RayExecutor:
        if not ray.is_initialized():
            self._init_ray()
        _stop_on_sigterm()
        self._check_fits()
        r = self.resources
        self._remote = ray.remote(
            num_cpus=r.cpus_per_trial,
            num_gpus=r.gpus_per_trial,
            max_calls=r.trials_per_worker,
            max_retries=r.max_retries,
        )(run_trial).options(name="harness-trial")
        return self

    def __exit__(self, *exc) -> None:
        if self._started_ray:
            ray.shutdown()

    def _init_ray(self) -> None:
        env = dict(WORKER_ENV)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in [os.getcwd(), os.environ.get("PYTHONPATH", "")] if p
        )
        kwargs: dict[str, Any] = dict(
            runtime_env={"env_vars": env},
            log_to_driver=False,
            logging_level=logging.ERROR,
            configure_logging=True,
        )
        if self.address:
            kwargs["address"] = self.address
        else:
            kwargs.update(include_dashboard=False, object_store_memory=256 * 1024**2)
        try:
            ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as e:
            where = self.address or "a local Ray"
            raise UserError(f"cannot start or reach Ray at {where}: {e}") from None
        self._started_ray = True

    def _check_fits(self) -> None:
        """A trial asking for more than any node has would wait forever: say so now."""
        r = self.resources
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        fits = any(
            n["Resources"].get("CPU", 0) >= r.cpus_per_trial
            and n["Resources"].get("GPU", 0) >= r.gpus_per_trial
            for n in nodes
        )
        if not fits:
            biggest = max(
                ((n["Resources"].get("CPU", 0), n["Resources"].get("GPU", 0)) for n in nodes),
                default=(0, 0),
            )
            raise UserError(
                f"resources: a trial needs {r.cpus_per_trial} CPU and {r.gpus_per_trial} GPU "
                f"but the largest Ray node has {biggest[0]} CPU and {biggest[1]} GPU"
            )

    def submit(self, request: dict[str, Any]) -> ray.ObjectRef:
        return self._remote.remote(request)

    @staticmethod
    def wait(refs: list[ray.ObjectRef], timeout: float) -> list[ray.ObjectRef]:
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        return ready

    @staticmethod
    def result(ref: ray.ObjectRef) -> tuple[dict[str, Any] | None, str | None]:
        """(result, None) on success; (None, error text) when the trial raised or its worker
        died more often than `max_retries` allows."""
        try:
            return ray.get(ref), None
        except ray.exceptions.RayTaskError as e:
            return None, _task_error_text(e)
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as e:
            return None, f"worker died and retries were exhausted: {type(e).__name__}"
        except ray.exceptions.RayError as e:
            return None, f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"

    @staticmethod
    def cancel(refs: list[ray.ObjectRef]) -> None:
        for ref in refs:
            ray.cancel(ref, force=True)


def _stop_on_sigterm() -> None:
    """SIGTERM (a scheduler, `kill`) stops the job like Ctrl-C: running trials are cancelled and
    the saved state resumes them. Replaces Ray's handler, which exits without that step."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _task_error_text(error: Exception) -> str:
    cause = getattr(error, "cause", None)
    text = str(error)
    if cause is not None:
        text = f"{type(cause).__name__}: {cause}\n{text}"
    return text if len(text) < 20_000 else text[-20_000:]
