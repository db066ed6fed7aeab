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
    out = capsys.readouterr().out
    assert out == (
        "a trial's worker died (The actor is dead because its worker process has died.); "
        "Ray runs the trial again (1 retries left)\n"
    )


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


def test_the_raylets_own_notice_of_a_death_is_left_to_the_harness(capsys):
    reword_task_failures()
    death = (
        "A worker died or was killed while executing a task by an unexpected system error. "
        "To troubleshoot the problem, check the logs for the dead worker. Lease ID: 0100"
    )
    ray_worker.print_to_stdstream(notice(death), ignore_prefix=False)
    assert capsys.readouterr().out == ""


def test_other_raylet_messages_pass_unchanged(capsys):
    reword_task_failures()
    ray_worker.print_to_stdstream(notice("something else entirely"), ignore_prefix=False)
    assert "something else entirely" in capsys.readouterr().out
