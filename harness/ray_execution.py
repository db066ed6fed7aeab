"""Trials on Ray: one warm actor per concurrent-trial slot, on a local Ray or a cluster.

Each slot is a Ray actor holding the job's per-trial resources (CPUs, GPUs) for its whole life:
it imports TensorFlow once and runs trial after trial, and since an actor keeps the GPUs Ray gave
it at creation, the devices TensorFlow initialised in that process stay the right ones (a task
reusing a worker could be handed other GPU ids). An actor whose process dies is restarted by Ray
and its trial retried, up to `resources.max_retries` times. The job's `EpochChannel` is one more
actor: workers report each epoch to it and hear whether to stop.

`start()` brings Ray and the actors up in a background thread, so that the actors import
TensorFlow while the driver imports it and checks the job: the first trial then starts in a warm
process instead of paying the ~3 s import inside the trial phase. A job refused meanwhile only
waits for that start to finish before `close()` stops Ray.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import sys
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ray

from harness import reaper, tf_env
from harness.channel import EpochChannel, make_channel
from harness.errors import UserError, sigterm_as_interrupt
from harness.execution import ExecutorLost
from harness.job import JobSpec, ResourcesSpec

# Quiet TensorFlow's C++ start-up banners in every worker; keep the driver's cwd importable so a
# job can name its own `package.module:HyperModel`.
WORKER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}


class TrialWorker:
    """A warm worker process (Ray actor): runs `run_trial` for each request it is given."""

    def warm(self, resources: dict[str, Any], job: dict[str, Any] | None = None) -> None:
        """Imports what a trial needs, sets up devices and reads `job`'s data before the
        first trial arrives."""
        from harness.trial_runner import warm_up

        warm_up(resources, job)

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        from harness.trial_runner import run_trial

        return run_trial(request)


class RayChannelClient:
    """What a worker holds to reach the job's channel actor (EpochChannel's `report` and
    `check`)."""

    def __init__(self, actor):
        self.actor = actor

    def report(
        self,
        trial_id: str,
        epoch: int,
        metrics: dict[str, float],
        ranked: dict[str, float] | None = None,
    ) -> str | None:
        return ray.get(self.actor.report.remote(trial_id, epoch, metrics, ranked))

    def check(self, trial_id: str, epochs_done: float, metrics: dict[str, float]) -> str | None:
        return ray.get(self.actor.check.remote(trial_id, epochs_done, metrics))


def _lost(error: BaseException) -> str:
    first = (str(error).strip().splitlines() or [""])[0][:200]
    return f"lost the Ray cluster ({type(error).__name__}: {first})"


def executor_for(spec: JobSpec, address: str | None = None) -> RayExecutor:
    """The executor of a job: its resources, pruning channel and (on a cluster) its own code."""
    return RayExecutor(
        spec.resources,
        make_channel(spec),
        address,
        user_packages(spec),
        spec.tuner.max_trials,
        spec.worker_form(),
    )


def user_packages(spec: JobSpec) -> list[str]:
    """The local package (or module file) of a job's own `package.module:Class` search space,
    when it is not installed: what the workers of a cluster need shipped to them."""
    import importlib.util

    name = spec.search_space.name
    if ":" not in name:
        return []
    top = name.split(":")[0].split(".")[0]
    found = importlib.util.find_spec(top)
    if found is None or found.origin is None:
        return []
    origin = os.path.realpath(found.origin)
    if "site-packages" in origin or not origin.startswith(os.path.realpath(os.getcwd())):
        return []  # installed, or from elsewhere: the nodes are expected to have it
    is_package = found.submodule_search_locations is not None
    return [os.path.dirname(origin) if is_package else origin]


@dataclass
class _Slot:
    actor: Any = None
    trials: int = 0  # run by the current actor process


class RayExecutor:
    """Runs trial requests on `max_concurrent_trials` warm actors (see module docstring)."""

    def __init__(
        self,
        resources: ResourcesSpec,
        channel: EpochChannel,
        address: str | None = None,
        py_modules: list[str] | None = None,
        max_trials: int | None = None,
        job: dict[str, Any] | None = None,
    ):
        self.resources = resources
        self._job = job  # its worker form: each new actor reads its data while it warms
        # The job's own code (a `package.module:Class` search space from the working
        # directory): shipped to every node of a cluster by Ray's runtime environment.
        self.py_modules = py_modules or []
        self.address = address or resources.address or os.environ.get("RAY_ADDRESS")
        self._channel = channel
        self._started_ray = False
        self._slots = [_Slot() for _ in range(resources.max_concurrent_trials)]
        # Actors started (and warmed) up front: no more than the job can use.
        self._warm_slots = min(len(self._slots), max_trials or len(self._slots))
        self._busy: dict[ray.ObjectRef, int] = {}
        self._thread: threading.Thread | None = None
        self._started, self._closed = threading.Event(), threading.Event()
        self._ray_up = threading.Event()  # Ray started (or failed to); actors may still warm
        self._start_error: BaseException | None = None
        self._up = False

    def start(self) -> RayExecutor:
        """Starts Ray and warms the actors in a background thread; `__enter__` waits for it."""
        if self._thread is None and not self._up:
            self._set_local_env()
            self._thread = threading.Thread(
                target=self._start_guarded, name="ray-start", daemon=True
            )
            self._thread.start()
        return self

    def _start_guarded(self) -> None:
        try:
            self._start()
        except BaseException as e:  # noqa: BLE001 - raised again in the main thread
            self._start_error = e
        finally:
            self._ray_up.set()
            self._started.set()
        # Ray starts its local processes with PR_SET_PDEATHSIG, which Linux ties to the
        # creating *thread*: this thread must outlive the Ray it started, or the kernel kills
        # Ray's GCS and raylet the moment it returns.
        self._closed.wait()

    def _start(self) -> None:
        if not ray.is_initialized():
            self._init_ray()
        # Also on a Ray session the caller started: its notices reach this process's stdout.
        reword_task_failures()
        self._check_fits()
        r = self.resources
        self._worker_cls = ray.remote(
            num_cpus=r.cpus_per_trial,
            num_gpus=r.gpus_per_trial,
            max_restarts=r.max_retries,
            max_task_retries=r.max_retries,
        )(TrialWorker)
        # The trial actors first: they take the worker processes Ray started ahead of time.
        for slot in self._slots[: self._warm_slots]:
            self._new_actor(slot)
        self._ray_up.set()
        self._channel_actor = ray.remote(num_cpus=0)(EpochChannel).remote(
            self._channel.pruner, self._channel.objective, self._channel.direction
        )
        self._up = True
        _running.add(self)

    def let_ray_start_first(self) -> None:
        """Waits, when the machine has too few cores for everything starting at once, until
        a local Ray is up and its actors are created, before this process imports TensorFlow.

        Ray's start keeps about one and a half cores busy for seconds (its GCS, raylet and
        Python helpers), and the actors can only import TensorFlow after it. Importing
        TensorFlow here at the same time slowed that start, so the first trial waited for its
        actor; after it, this import runs beside the actors' (benchmarks/scaling.py, 2 cores).
        With cores to spare, or on a cluster, both go on at once."""
        if self._thread is None or self.address:
            return
        if _usable_cpus() >= self._warm_slots + 3:  # Ray's start, this import, each actor's
            return
        while not self._ray_up.wait(0.2):  # in steps: Ctrl-C stays prompt
            pass

    def wait_started(self) -> None:
        """Waits until the background start is done (its error, if any, `__enter__` raises).

        The driver calls it before it first imports TensorFlow Datasets. That import swaps
        `builtins.__import__` for the whole process while it runs (etils' `lazy_imports`), so
        an import the start thread makes at that moment gets a lazy stand-in instead of the
        module: seen as `TypeError: 'LazyModule' object is not callable` from Ray's
        `RDTManager()` when the first actor was created."""
        if self._thread is not None:
            while not self._started.wait(0.2):  # in steps: Ctrl-C stays prompt
                pass

    def _wait_started(self) -> None:
        if self._thread is not None:
            self._started.wait()
        if self._start_error is not None:
            error, self._start_error = self._start_error, None
            raise error

    def __enter__(self) -> RayExecutor:
        if self._thread is None and not self._up:
            self._set_local_env()
            self._start()
        self._wait_started()
        # Running trials are cancelled and the saved state resumes them; Ray's own handler
        # exits without that step.
        sigterm_as_interrupt()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stops the actors, and the Ray this executor started; safe to call more than once,
        and on an executor whose start is still under way (it is waited for first)."""
        if self._thread is not None:
            self._started.wait()
        for slot in self._slots:
            if ray.is_initialized():  # else its actors went with the Ray they ran on
                _kill(slot.actor)
            slot.actor = None
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
        self._up = False
        _running.discard(self)
        if self._thread is not None:
            self._closed.set()
            self._thread.join()
            self._thread = None

    def _worker_env(self) -> dict[str, str]:
        env = {**WORKER_ENV, **tf_env.defaults()}
        if not (self.address and self.py_modules):
            paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([os.getcwd(), *paths]))
        return env

    def _set_local_env(self) -> None:
        """A local Ray's processes inherit this process's environment: the workers' variables
        are set here (in the main thread, before Ray starts) rather than as a runtime
        environment, so that the worker processes Ray starts ahead of time can serve the
        actors (a runtime environment would need new ones, ~1 s more before the first trial).
        """
        if not self.address and not ray.is_initialized():
            os.environ.update(self._worker_env())

    def _init_ray(self) -> None:
        runtime_env: dict[str, Any] | None = None
        if self.address:
            runtime_env = {"env_vars": self._worker_env()}
            if self.py_modules:
                # Other machines do not have this directory: Ray uploads the user's packages.
                runtime_env["py_modules"] = self.py_modules
        kwargs: dict[str, Any] = dict(
            runtime_env=runtime_env,
            log_to_driver=False,
            logging_level=logging.ERROR,
            configure_logging=True,
        )
        if self.address:
            _probe(self.address)
            kwargs["address"] = self.address
        else:
            # "local": a Ray of its own, even when `ray start` left a cluster on this machine
            # (a bare ray.init() would join it, or fail on a stale one).
            kwargs.update(
                address="local", include_dashboard=False, object_store_memory=256 * 1024**2
            )
            self._reaper = reaper.watch()  # the local Ray dies with this driver, however
        try:
            ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise UserError(connect_error(self.address, e)) from None
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
        index = next(i for i in range(len(self._slots)) if i not in self._busy.values())
        slot = self._slots[index]
        limit = self.resources.trials_per_worker
        if slot.actor is not None and limit is not None and slot.trials >= limit:
            _kill(slot.actor)
            slot.actor = None
        if slot.actor is None:
            self._new_actor(slot)
        slot.trials += 1
        request = {**request, "channel": RayChannelClient(self._channel_actor)}
        ref = slot.actor.run.remote(request)
        self._busy[ref] = index
        return ref

    def wait(self, refs: list[ray.ObjectRef], timeout: float) -> list[ray.ObjectRef]:
        """Returns as soon as one trial ended (or after `timeout`), with all that have."""
        with self._cluster_needed():
            ready, rest = ray.wait(refs, num_returns=1, timeout=timeout)
            if ready and rest:
                ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        return ready

    def result(self, ref: ray.ObjectRef) -> tuple[dict[str, Any] | None, str | None]:
        """(result, None) on success; (None, error text) when the trial raised or its worker
        died more often than `max_retries` allows (the slot then gets a new actor).
        `ExecutorLost` when the cluster itself went: the trial did not fail, it runs again
        on resume."""
        index = self._busy.pop(ref)
        try:
            return ray.get(ref), None
        except ray.exceptions.RayTaskError as e:
            return None, _task_error_text(e)
        except ray.exceptions.RayError as e:  # the actor died: retries exhausted
            if not self._channel_alive():
                raise ExecutorLost(_lost(e)) from None
            self._retire(index)
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            return None, f"worker died and retries were exhausted: {type(e).__name__} {first}"

    def drain(self) -> list[dict[str, Any]]:
        with self._cluster_needed():
            return ray.get(self._channel_actor.drain.remote())

    def seed(self, curves: dict[str, list[tuple[int, float]]]) -> None:
        with self._cluster_needed():
            ray.get(self._channel_actor.seed.remote(curves))

    def promotion(
        self, paused: dict[str, float], drawn_all: bool = False
    ) -> tuple[str, float] | None:
        if not paused:
            return None
        with self._cluster_needed():
            return ray.get(self._channel_actor.promotion.remote(paused, drawn_all))

    @contextlib.contextmanager
    def _cluster_needed(self) -> Iterator[None]:
        """The job's channel actor or the cluster gone (its head killed): `ExecutorLost`."""
        try:
            yield
        except ray.exceptions.RayError as e:
            raise ExecutorLost(_lost(e)) from None

    def _channel_alive(self) -> bool:
        """Whether the job's channel actor still answers: when it does not, the cluster (or
        the node holding the job's state) is gone, not one trial's worker."""
        try:
            ray.get(self._channel_actor.__ray_ready__.remote(), timeout=30)
        except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
            return False
        return True

    def kill(self, ref: ray.ObjectRef) -> None:
        """Stops one trial now: its actor is killed (a new one serves the slot next time)."""
        self._retire(self._busy.pop(ref))

    def cancel(self, refs: list[ray.ObjectRef]) -> None:
        for ref in refs:
            if ref in self._busy:
                self.kill(ref)

    def _new_actor(self, slot: _Slot) -> None:
        """A new worker process for `slot`; it starts importing at once (its `warm` call runs
        before any trial queued behind it)."""
        slot.actor, slot.trials = self._worker_cls.remote(), 0
        slot.actor.warm.remote(self.resources.model_dump(mode="json"), self._job)

    def _retire(self, index: int) -> None:
        _kill(self._slots[index].actor)
        self._slots[index] = _Slot()


# What the raylet publishes when an actor task fails and Ray will run it again.
_RETRY = re.compile(
    r"Task TrialWorker\.\S+ failed\. There are (\d+|infinite) (?:oom )?retries remaining, so the "
    r"task will be retried\. "
    r"Error: (.*)",
    re.S,
)


# Its notice of the same death: a dozen lines of ids, which do not name the task. Dropped
# while an executor runs in this process (the harness says it), else left to Ray: on a Ray
# session the caller started, their own tasks die too.
_DIED = "A worker died or was killed while executing a task"
# The executors started and not closed (weakly: one dropped unclosed stops counting).
_running: weakref.WeakSet[RayExecutor] = weakref.WeakSet()


def reword_task_failures() -> None:
    """Ray's driver prints the raylet's task-failure notices on stdout, prefixed `(raylet)`:
    when the harness stops a trial itself (time limit, pruning) the notice says it "will be
    retried", which is false (the actor is killed for good, and the harness prints why). This
    drops those, and words a real worker death (Ray then does run the trial again) as the
    harness's other lines are, in one line instead of Ray's dozen. Other raylet messages pass
    as they are.

    The harness's own lines are printed here, not through Ray's printer: that one runs every
    batch through its log deduplicator, which holds back a repeated line and prints it later
    within whatever batch comes next, and with that batch's prefix setting."""
    from ray._private import worker as ray_worker

    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or getattr(original, "harness_reworded", False):
        return

    def printer(data: dict[str, Any], ignore_prefix: bool) -> None:
        if data.get("pid") != "raylet":
            return original(data, ignore_prefix)
        kept, reworded = [], []
        for line in data.get("lines", []):
            retry = _RETRY.match(line)
            if line.startswith(_DIED) and _running:
                continue  # said by the retry line, or by the trial's FAILED line
            if retry is None:
                kept.append(line)
            elif "killed by `ray.kill`" not in retry.group(2):
                error = (retry.group(2).strip().splitlines() or ["no reason given"])[0][:200]
                reworded.append(
                    f"a trial's worker died ({error}); Ray runs the trial again "
                    f"({retry.group(1)} retries left)"
                )
        with contextlib.suppress(OSError, ValueError):  # a closed stdout: Ray's thread lives
            if kept:
                original({**data, "lines": kept}, ignore_prefix)
            for line in reworded:
                print(line, file=sys.stdout, flush=True)

    printer.harness_reworded = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = printer


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _kill(actor) -> None:
    if actor is not None:
        with contextlib.suppress(ray.exceptions.RayError):  # gone with a lost cluster
            ray.kill(actor, no_restart=True)


def _task_error_text(error: Exception) -> str:
    cause = getattr(error, "cause", None)
    text = str(error)
    if cause is not None:
        text = f"{type(cause).__name__}: {cause}\n{text}"
    return text if len(text) < 20_000 else text[-20_000:]


AUTH_HINT = (
    "a cluster started by `ray start` (Ray >= 2.59) uses token authentication: set "
    "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to the head's token (`ray get-auth-token` on the "
    "head prints it) here and on every node; see the README, GPUs and clusters"
)


def _probe(address: str, timeout: float = 5.0) -> None:
    """A cluster address nothing answers on: Ray would retry for minutes, printing its own log
    lines, before it gives up; a TCP connection to the head's port says so in seconds."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto", a Ray Client address, or no port: Ray words those itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        reason = e.strerror or str(e) or type(e).__name__
        raise UserError(
            f"cannot reach Ray at {address}: {reason} (is a Ray head running there, "
            "`ray start --head`, and its port open to this machine?)"
        ) from None


def connect_error(address: str | None, error: Exception) -> str:
    """One line for a Ray that cannot be started or reached; for a cluster address it says
    what token authentication needs when this process has no token, or the token is refused."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    if address is None:
        return f"cannot start a local Ray: {first}"
    message = f"cannot reach Ray at {address}: {first}"
    no_token = not os.environ.get("RAY_AUTH_TOKEN") and not os.environ.get("RAY_AUTH_TOKEN_PATH")
    refused = any(w in str(error) for w in ("auth", "Auth", "UNAUTHENTICATED"))
    if refused or no_token or os.environ.get("RAY_AUTH_MODE") != "token":
        message += f"; {AUTH_HINT}"
    return message
