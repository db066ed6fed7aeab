"""What the driver prints of Ray's own task-failure notices (no Ray cluster needed)."""

from __future__ import annotations

from ray._private import worker as ray_worker

from harness.ray_execution import reword_task_failures

KILLED = (
    "Task TrialWorker.run failed. There are 2 retries remaining, so the task will be retried. "
    "Error: The actor is dead because it was killed by `ray.kill`."
)
DIED = (
    "Task TrialWorker.run failed. There are 1 retries remaining, so the task will be retried. "
    "Error: The actor is dead because its worker process has died.\nmore detail"
)


def notice(line: str) -> dict:
    return {"lines": [line], "pid": "raylet", "is_err": False}


def test_a_trial_the_harness_stopped_is_not_announced_as_retried(capsys):
    reword_task_failures()
    reword_task_failures()  # idempotent: one wrapper
    ray_worker.print_to_stdstream(notice(KILLED), ignore_prefix=False)
    assert capsys.readouterr().out == ""


def test_a_dead_worker_is_worded_as_the_harness_speaks(capsys):
    reword_task_failures()
    ray_worker.print_to_stdstream(notice(DIED), ignore_prefix=False)
    # Lines, not the whole output: a Ray session another test left in this process may print
    # its own notices meanwhile (seen in CI: a warm-up killed at a job's end).
    lines = capsys.readouterr().out.splitlines()
    assert (
        "a trial's worker died (The actor is dead because its worker process has died.); "
        "Ray runs the trial again (1 retries left)"
    ) in lines
    assert not [line for line in lines if "TrialWorker.run failed" in line or "more detail" in line]


def test_an_out_of_memory_retry_without_a_reason_is_worded_too(capsys):
    reword_task_failures()
    oom = (
        "Task TrialWorker.run failed. There are infinite oom retries remaining, so the task "
        "will be retried. Error: "
    )
    ray_worker.print_to_stdstream(notice(oom), ignore_prefix=False)
    assert capsys.readouterr().out == (
        "a trial's worker died (no reason given); "
        "Ray runs the trial again (infinite retries left)\n"
    )


def test_the_raylets_own_notice_of_a_death_is_left_to_the_harness(capsys, monkeypatch):
    """While an executor runs the harness words each death itself; with none running (a Ray
    session the caller started, used for their own tasks too) Ray's notice is theirs."""
    from harness import ray_execution

    reword_task_failures()
    death = (
        "A worker died or was killed while executing a task by an unexpected system error. "
        "To troubleshoot the problem, check the logs for the dead worker. Lease ID: 0100"
    )
    monkeypatch.setattr(ray_execution, "_running", {1})
    ray_worker.print_to_stdstream(notice(death), ignore_prefix=False)
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(ray_execution, "_running", set())
    ray_worker.print_to_stdstream(notice(death), ignore_prefix=False)
    assert "A worker died or was killed" in capsys.readouterr().out


def test_an_executor_dropped_unclosed_stops_holding_back_rays_notices(capsys, monkeypatch):
    import gc
    import weakref

    from harness import ray_execution

    class Executor:  # stands in: `_running` holds executors weakly
        pass

    reword_task_failures()
    death = "A worker died or was killed while executing a task by an unexpected system error."
    monkeypatch.setattr(ray_execution, "_running", weakref.WeakSet())
    executor = Executor()
    ray_execution._running.add(executor)
    ray_worker.print_to_stdstream(notice(death), ignore_prefix=False)
    assert capsys.readouterr().out == ""
    del executor
    gc.collect()
    ray_worker.print_to_stdstream(notice(death), ignore_prefix=False)
    assert "A worker died or was killed" in capsys.readouterr().out


def test_other_raylet_messages_pass_unchanged(capsys):
    reword_task_failures()
    ray_worker.print_to_stdstream(notice("something else entirely"), ignore_prefix=False)
    assert "something else entirely" in capsys.readouterr().out
    # Another task's retry (the caller's own, on a Ray session they started) is not a trial's.
    theirs = KILLED.replace("TrialWorker.run", "Simulator.step")
    ray_worker.print_to_stdstream(notice(theirs), ignore_prefix=False)
    assert "Simulator.step failed" in capsys.readouterr().out


def test_a_ray_session_the_caller_started_gets_the_rewording_too(monkeypatch):
    """A script (or the test suite) that called `ray.init` itself before the harness's
    executor starts: Ray's notices reach this process all the same, so the rewording is put in
    place whoever started Ray. Seen in CI: a session started by a fixture printed "Task
    TrialWorker.warm failed ... will be retried" for a warm-up the harness had killed."""
    import pytest

    from harness import ray_execution
    from harness.channel import EpochChannel
    from harness.job import ResourcesSpec

    class Checked(Exception):
        pass

    def fits(self):
        raise Checked  # the start goes no further: no actors

    def plain(data, ignore_prefix):
        pass

    monkeypatch.setattr(ray_worker, "print_to_stdstream", plain)
    monkeypatch.setattr(ray_execution.ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray_execution.RayExecutor, "_check_fits", fits)
    executor = ray_execution.RayExecutor(ResourcesSpec(), EpochChannel(None, "loss", "min"))
    with pytest.raises(Checked):
        executor._start()
    assert getattr(ray_worker.print_to_stdstream, "harness_reworded", False)
    assert not executor._started_ray


def test_a_held_back_repeat_of_ray_is_not_printed_within_the_harness_line(capsys):
    """Ray's deduplicator holds back a repeated raylet line and prints it within the next
    batch it is given, with that batch's prefix setting: the harness's line goes around it."""
    reword_task_failures()
    for _ in range(3):
        ray_worker.print_to_stdstream(notice(DIED), ignore_prefix=False)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert all(line.startswith("a trial's worker died (") for line in lines)


def _executor(monkeypatch, cpus: int, address: str | None = None, slots: int = 1):
    """A RayExecutor whose background start is a thread that sets `_ray_up` when told."""
    import threading

    from harness import ray_execution
    from harness.channel import EpochChannel
    from harness.job import ResourcesSpec

    monkeypatch.setattr(ray_execution, "_usable_cpus", lambda: cpus)
    executor = ray_execution.RayExecutor(
        ResourcesSpec(max_concurrent_trials=slots), EpochChannel(None, "loss", "min"), address
    )
    release = threading.Event()
    executor._thread = threading.Thread(target=lambda: release.wait() and executor._ray_up.set())
    executor._thread.start()
    return executor, release


def _waited(executor, release, seconds: float = 0.5) -> bool:
    import threading
    import time

    threading.Timer(seconds, release.set).start()
    started = time.monotonic()
    executor.let_ray_start_first()
    return time.monotonic() - started >= seconds * 0.8


def test_a_small_machine_lets_a_local_ray_start_before_the_driver_imports(monkeypatch):
    assert _waited(*_executor(monkeypatch, cpus=2, slots=1))
    assert _waited(*_executor(monkeypatch, cpus=4, slots=2))


def test_cores_to_spare_or_a_cluster_start_both_at_once(monkeypatch):
    assert not _waited(*_executor(monkeypatch, cpus=8, slots=2))
    assert not _waited(*_executor(monkeypatch, cpus=2, address="10.0.0.1:6379"))


def test_wait_started_blocks_until_the_start_thread_is_done(monkeypatch):
    import threading
    import time

    executor, release = _executor(monkeypatch, cpus=8, slots=1)
    executor._thread = threading.Thread(target=lambda: release.wait() and executor._started.set())
    executor._thread.start()
    threading.Timer(0.5, release.set).start()
    started = time.monotonic()
    executor.wait_started()
    assert time.monotonic() - started >= 0.4


def test_the_driver_reads_its_data_only_once_the_workers_have_started(tmp_path, monkeypatch):
    """TFDS's import swaps `builtins.__import__` process-wide for a moment (etils'
    `lazy_imports`); Ray's start thread importing then got a lazy stand-in and the job died
    with "TypeError: 'LazyModule' object is not callable". So the data (which imports TFDS)
    comes after the start thread is done."""
    import pytest
    from rich.console import Console

    from harness import tuning
    from harness.job import validate_job
    from tests.conftest import tiny_job

    calls = []

    class Executor:
        def wait_started(self):
            calls.append("workers started")

        def close(self):
            calls.append("closed")

    def pipeline(name):
        calls.append("data")
        raise RuntimeError("enough")

    spec = validate_job(tiny_job(tmp_path))
    monkeypatch.setattr(tuning.PIPELINES, "get", pipeline)
    with pytest.raises(RuntimeError, match="enough"):
        tuning.tune(spec, Console(quiet=True), executor=Executor())
    assert calls == ["workers started", "data", "closed"]


def test_workers_get_tensorflows_allocator_setting_unless_the_user_chose(monkeypatch):
    """harness.tf_env's variables reach every worker (a cluster's as its runtime environment);
    a value the user set is passed on instead of the harness's."""
    from harness import ray_execution
    from harness.channel import EpochChannel
    from harness.job import ResourcesSpec

    def worker_env() -> dict[str, str]:
        resources = ResourcesSpec()
        executor = ray_execution.RayExecutor(resources, EpochChannel(None, "loss", "min"), None)
        return executor._worker_env()

    monkeypatch.delenv("TF_CPU_ALLOCATOR_USE_BFC", raising=False)
    assert worker_env()["TF_CPU_ALLOCATOR_USE_BFC"] == "true"
    monkeypatch.setenv("TF_CPU_ALLOCATOR_USE_BFC", "false")
    assert worker_env()["TF_CPU_ALLOCATOR_USE_BFC"] == "false"
