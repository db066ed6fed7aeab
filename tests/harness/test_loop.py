"""The trial loop with scripted trials (FakeExecutor): no Ray, no training, milliseconds each.

A trial's script yields its per-epoch metrics from its hyperparameter `quality` in [0, 1]: the
validation accuracy climbs towards `quality`, so good and bad trials are told apart early.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras_tuner as kt
import pytest
from rich.console import Console
from tensorboard.plugins.hparams import metadata

from harness.channel import make_channel
from harness.cli import outcome_code
from harness.execution import FakeExecutor
from harness.job import validate_job
from harness.jobdir import JobDir, read_json
from harness.oracles import make_oracle
from harness.status import trial_rows
from harness.tuning import TrialLoop, _prepare_job_dir, _write_spec
from tests.conftest import tiny_job

QUIET = Console(quiet=True)


def climb(request):
    """val_accuracy rises towards the trial's `quality` over its epochs."""
    quality = request["hyperparameters"]["values"]["quality"]
    epochs = request["job"]["tuner"]["epochs"]
    for epoch in range(epochs):
        yield {"loss": 1 - quality, "val_accuracy": quality * (epoch + 1) / epochs}


def quality_space() -> kt.HyperParameters:
    space = kt.HyperParameters()
    space.Float("quality", 0.05, 1.0, default=0.5)
    return space


def make_loop(tmp_path: Path, script, capacity: int = 1, space=None, **tuner):
    """The loop over `space` (default: one `quality` in [0.05, 1], default 0.5)."""
    tuner = {"algorithm": "random", "max_trials": 6, "epochs": 9, "seed": 3, **tuner}
    spec = validate_job(tiny_job(tmp_path, tuner=tuner), cross_check=False)
    job_dir = JobDir(spec.job_dir())
    _prepare_job_dir(job_dir, spec, overwrite=False)
    _write_spec(job_dir, spec)  # job.json, as `harness tune` writes it
    oracle = make_oracle(spec.tuner, job_dir)
    oracle.update_space(space or quality_space())
    executor = FakeExecutor(script, make_channel(spec), capacity=capacity)
    spec.resources.max_concurrent_trials = capacity
    return TrialLoop(spec, job_dir, oracle, executor, QUIET), executor


def runs(loop) -> dict[str, dict]:
    return {
        t.trial_id: read_json(loop.job_dir.trial_dir(t.trial_id) / "run.json")
        for t in loop.oracle.trials.values()
    }


def strict_json_everywhere(root: Path) -> None:
    """Every JSON file of the job directory parses as strict JSON (no bare NaN/Infinity)."""

    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    for path in root.rglob("*.json"):
        json.loads(path.read_text(), parse_constant=refuse)


def test_runs_max_trials_first_is_default_point(tmp_path):
    loop, executor = make_loop(tmp_path, climb, max_trials=4)
    outcome = loop.run()
    assert outcome.completed == 4 and outcome.failed == 0 and outcome.stop_reason is None
    assert outcome_code(outcome, export_requested=False)[0] == 0
    assert executor.submitted[0]["hyperparameters"]["values"]["quality"] == 0.5
    best_id, best_score = outcome.best
    assert best_score == max(t.score for t in loop.oracle.trials.values())
    assert all(r["status"] == "COMPLETED" for r in runs(loop).values())
    strict_json_everywhere(loop.job_dir.root)


def test_nearby_seeds_draw_independently_and_a_seed_repeats_its_draws(tmp_path):
    """Keras Tuner steps an oracle's seed once per value drawn: with the job's seed passed on as
    it is, seeds 8 and 9 replayed one sequence a value apart (the race's seeds 8 and 9 shared
    their draws). The harness hashes the job's seed first."""

    def draws(name, seed):
        loop, executor = make_loop(tmp_path / name, climb, max_trials=25, epochs=1, seed=seed)
        loop.run()
        return [r["hyperparameters"]["values"]["quality"] for r in executor.submitted][1:]

    eight, nine, again = draws("8", 8), draws("9", 9), draws("8-again", 8)
    assert len(eight) == len(nine) == 24
    assert not set(eight) & set(nine)  # a shifted replay would share 23 of 24
    assert again == eight


def test_asha_prunes_losers_and_their_best_score_counts(tmp_path):
    loop, executor = make_loop(
        tmp_path, climb, max_trials=10, pruning={"rule": "asha", "reduction_factor": 3}
    )
    outcome = loop.run()
    records = runs(loop)
    pruned = {tid: r for tid, r in records.items() if r["status"] == "PRUNED"}
    assert pruned and outcome.pruned == len(pruned)
    assert outcome.completed + outcome.pruned == 10
    for tid, record in pruned.items():
        trial = loop.oracle.trials[tid]
        assert record["pruned"]["epochs_done"] in (1, 3)  # ASHA's rungs for 9 epochs
        assert "ASHA" in record["pruned"]["reason"]
        assert trial.status == "COMPLETED" and trial.score is not None  # it still counts
        assert trial.message.startswith("pruned after")
    # A pruned trial stopped training: fewer epochs than the schedule.
    epochs = {r["trial_id"]: len(list(climb(r))) for r in executor.submitted}
    assert all(
        len(loop.oracle.trials[t].metrics.get_history("val_accuracy")) < epochs[t] for t in pruned
    )
    assert outcome.best[0] not in pruned
    strict_json_everywhere(loop.job_dir.root)


def test_median_rule_prunes_below_median(tmp_path):
    loop, _ = make_loop(tmp_path, climb, max_trials=8, pruning={"rule": "median", "min_trials": 2})
    outcome = loop.run()
    reasons = [r["pruned"]["reason"] for r in runs(loop).values() if r["status"] == "PRUNED"]
    assert reasons and all(r.startswith("median rule") for r in reasons)
    assert outcome.pruned == len(reasons)


def test_nan_loss_fails_the_trial_and_is_never_written(tmp_path):
    def diverge(request):
        yield {"loss": 0.5, "val_accuracy": 0.6}
        if request["trial_id"] == "0":
            yield {"loss": float("nan"), "val_accuracy": float("nan")}
        yield {"loss": 0.4, "val_accuracy": 0.7}

    loop, _ = make_loop(tmp_path, diverge, max_trials=2, epochs=2)
    outcome = loop.run()
    trial = loop.oracle.trials["0"]
    assert trial.status == "FAILED" and "loss became nan in epoch 2" in trial.message
    assert outcome.best[0] == "1" and outcome.failed == 1
    strict_json_everywhere(loop.job_dir.root)


def test_failure_limit_stops_cleanly_and_resume_does_not_rerun_failed(tmp_path):
    def broken(request):
        raise ValueError("cannot build this configuration")
        yield  # a generator

    loop, executor = make_loop(tmp_path, broken, max_trials=8, max_consecutive_failed_trials=3)
    outcome = loop.run()
    assert outcome.failed == 3 and outcome.completed == 0
    assert outcome.stop_reason and "3 trials in a row failed" in outcome.stop_reason
    assert len(executor.submitted) == 3
    assert outcome_code(outcome, export_requested=False)[0] == 3  # a script sees the failure
    # Resume with a fixed script: the failed trials stay failed, new trials run.
    loop2, executor2 = make_loop(tmp_path, climb, max_trials=5)
    outcome2 = loop2.run()
    assert [r["trial_id"] for r in executor2.submitted] == ["3", "4"]
    assert outcome2.failed == 3 and outcome2.completed == 2


def test_trial_time_limit_stops_and_fails_the_trial(tmp_path):
    import time

    def endless(request):
        while True:
            time.sleep(0.01)  # stands for an epoch's duration
            yield {"loss": 1.0, "val_accuracy": 0.1}

    loop, executor = make_loop(tmp_path, endless, max_trials=2, trial_time_limit_s=0.05)
    outcome = loop.run()
    assert outcome.failed == 2 and executor.killed == ["0", "1"]
    assert "trial time limit of 0.05 s exceeded" in loop.oracle.trials["0"].message
    row = {r["trial"]: r for r in trial_rows(loop.job_dir)}["0"]
    assert row["status"] == "FAILED" and "trial time limit" in row["reason"]
    assert row["val_accuracy"] is None and row["best_epoch"] is None  # no best epoch to name


def test_interrupt_then_resume_runs_each_trial_once(tmp_path):
    def interrupted(request):
        if request["trial_id"] == "2":
            raise KeyboardInterrupt
        yield from climb(request)

    loop, _ = make_loop(tmp_path, interrupted, max_trials=4, capacity=2)
    outcome = loop.run()
    assert outcome.interrupted
    done = {t.trial_id for t in loop.oracle.trials.values() if t.status == "COMPLETED"}
    loop2, executor2 = make_loop(tmp_path, climb, max_trials=4, capacity=2)
    outcome2 = loop2.run()
    rerun = [r["trial_id"] for r in executor2.submitted]
    assert not set(rerun) & done  # finished trials are not trained again
    assert outcome2.completed == 4 and len(loop2.oracle.trials) == 4


def test_a_lost_cluster_ends_the_run_as_an_interruption_and_resume_reruns(tmp_path, monkeypatch):
    """The Ray head killed mid-job (`ExecutorLost` from the executor): no trial is recorded
    failed, the run ends interrupted with the reason, and a resume runs the lost trials."""
    from harness.execution import ExecutorLost

    loop, executor = make_loop(tmp_path, climb, max_trials=4, capacity=2)
    drain = executor.drain
    calls = []

    def drain_until_lost():
        calls.append(1)
        if len(calls) == 4:  # mid-way: trials 0 and 1 are running
            raise ExecutorLost("lost the Ray cluster (ActorUnavailableError: ...)")
        return drain()

    monkeypatch.setattr(executor, "drain", drain_until_lost)
    outcome = loop.run()
    assert outcome.interrupted and outcome.lost.startswith("lost the Ray cluster")
    assert outcome.failed == 0
    loop2, executor2 = make_loop(tmp_path, climb, max_trials=4, capacity=2)
    outcome2 = loop2.run()
    assert {r["trial_id"] for r in executor2.submitted} >= {"0", "1"}  # run again
    assert outcome2.completed == 4 and outcome2.failed == 0


def test_a_full_disk_stops_the_search_with_one_line_and_resume_reruns_the_trial(tmp_path):
    """A trial that failed writing on a full disk is not a failed configuration: the search
    stops at once (UserError: one line, exit 2) instead of failing every next trial, and the
    trial runs again once there is space."""
    from harness.errors import UserError

    def disk_full(request):
        if request["trial_id"] == "1":
            raise OSError(28, "No space left on device", "/job/trials/1/checkpoint.weights.h5")
        yield from climb(request)

    loop, _ = make_loop(tmp_path, disk_full, max_trials=4)
    with pytest.raises(UserError, match=r"no space left on the device \(trial 1: .*Errno 28"):
        loop.run()
    assert loop.outcome.failed == 0
    loop2, executor2 = make_loop(tmp_path, climb, max_trials=4)
    outcome = loop2.run()
    assert executor2.submitted[0]["trial_id"] == "1" and outcome.completed == 4


def test_time_budget_stops_new_trials(tmp_path):
    loop, executor = make_loop(tmp_path, climb, max_trials=50, time_budget_s=1e-9)
    outcome = loop.run()
    assert executor.submitted == [] and outcome.completed == 0


def test_a_spent_time_budget_lets_running_trials_finish_and_continues_no_paused_one(
    tmp_path, monkeypatch
):
    pruning = {"rule": "asha", "grace_epochs": 1, "reduction_factor": 3, "promotion": True}
    # Without a budget, this seeded job continues a paused trial after its k-th submission.
    free_run, free_executor = make_loop(
        tmp_path / "free", climb_on, capacity=2, max_trials=9, pruning=pruning
    )
    free_run.run()
    k = next(i for i, r in enumerate(free_executor.submitted) if r.get("continue_from"))
    # The same job whose budget runs out with the k-th submission: trials are paused then.
    loop, executor = make_loop(
        tmp_path / "budget", climb_on, capacity=2, max_trials=9, pruning=pruning
    )
    monkeypatch.setattr(loop, "_budget_spent", lambda: len(executor.submitted) >= k)
    outcome = loop.run()

    def order(submitted):
        return [(r["trial_id"], r.get("continue_from")) for r in submitted]

    assert order(executor.submitted) == order(free_executor.submitted[:k])  # then nothing more
    assert loop._paused and not outcome.interrupted
    records = runs(loop)
    # The trials running when it ran out trained on to their end (the rule's pause, or all 9
    # epochs), recorded like any other.
    for request in executor.submitted[-2:]:
        record = records[request["trial_id"]]
        assert record["status"] == "COMPLETED" or record["pruned"]["epochs_done"] in (1, 3)
    assert outcome.completed + outcome.pruned == k == len(records)


@pytest.mark.parametrize("max_trials, warned", [(6, True), (40, False)])
def test_bayesian_budget_inside_initial_points_is_called_random(tmp_path, max_trials, warned):
    from harness.tuning import _warn_about_budget

    spec = validate_job(
        tiny_job(tmp_path, tuner={"algorithm": "bayesian", "max_trials": max_trials}),
        cross_check=False,
    )
    oracle = make_oracle(spec.tuner, JobDir(tmp_path / "j"))
    space = kt.HyperParameters()
    for name in ("a", "b", "c"):
        space.Float(name, 0.0, 1.0)
    oracle.update_space(space)
    console = Console(record=True, width=200)
    _warn_about_budget(spec, oracle, console)
    text = console.export_text()
    assert ("this search is random search" in text) is warned
    if warned:
        assert "9 random initial points" in text


@pytest.mark.parametrize("algorithm", ["random", "bayesian", "tpe", "grid", "hyperband"])
def test_each_oracle_drives_the_loop_to_its_end(tmp_path, algorithm):
    def script(request):
        values = request["hyperparameters"]["values"]
        epochs = values.get("tuner/epochs", request["job"]["tuner"]["epochs"])
        start = values.get("tuner/initial_epoch", 0)
        for epoch in range(start, epochs):
            yield {"loss": 1.0, "val_accuracy": values["quality"] * (epoch + 1) / epochs}

    extra = {"hyperband_factor": 3} if algorithm == "hyperband" else {}
    loop, executor = make_loop(
        tmp_path, script, capacity=2, algorithm=algorithm, max_trials=6, epochs=3, **extra
    )
    outcome = loop.run()
    assert outcome.completed == len(loop.oracle.trials) == len(executor.submitted) > 1
    assert outcome.best[1] == max(t.score for t in loop.oracle.trials.values())
    if algorithm != "grid":  # grid walks the space from its first values instead
        assert executor.submitted[0]["hyperparameters"]["values"]["quality"] == 0.5
    strict_json_everywhere(loop.job_dir.root)


def run_command(monkeypatch, *args: str):
    """`harness ARGS` in this process (the CLI's own subprocess tests are in test_cli.py),
    printing to a 250-column console; returns typer's result (exit_code, stdout)."""
    from rich.console import Console
    from typer.testing import CliRunner

    from harness import cli

    monkeypatch.setattr(cli, "console", Console(width=250))
    return CliRunner().invoke(cli.app, list(args))


def test_status_reads_the_job_directory_and_marks_best_and_pruned(tmp_path, monkeypatch):
    loop, _ = make_loop(tmp_path, climb, max_trials=8, pruning={"rule": "asha"})
    outcome = loop.run()
    result = run_command(monkeypatch, "status", str(loop.job_dir.root))
    assert result.exit_code == 0, result.output
    assert f"{outcome.best[0]} ★ best" in result.stdout
    assert "PRUNED (after 1 epochs: ASHA" in result.stdout
    assert f"{outcome.completed} completed" in result.stdout
    assert f"{outcome.pruned} pruned" in result.stdout.lower()
    header = result.stdout.split("┡")[0]  # the table's title and column names
    assert "quality" in header  # a column per varying hyperparameter

    rows = {r["trial"]: r for r in trial_rows(loop.job_dir)}
    for trial in loop.oracle.trials.values():
        row = rows[trial.trial_id]
        assert row["quality"] == trial.hyperparameters.get("quality")
        assert row["val_accuracy"] == trial.score and row["best"] == (
            trial.trial_id == outcome.best[0]
        )
        assert row["best_epoch"] == trial.best_step + 1
        assert row["status"] == ("PRUNED" if trial.message else "COMPLETED")
    csv_out = run_command(monkeypatch, "status", str(loop.job_dir.root), "--format", "csv")
    header, *lines = csv_out.stdout.splitlines()
    assert header.startswith("trial,best,status,reason,val_accuracy,best_epoch,epochs,duration_s")
    assert len(lines) == len(rows) and "quality" in header.split(",")
    as_json = run_command(monkeypatch, "status", str(loop.job_dir.root), "--format", "json")
    assert json.loads(as_json.stdout) == json.loads(json.dumps(list(rows.values())))


def test_status_table_fits_the_terminal_and_names_what_it_leaves_out(tmp_path, monkeypatch):
    from rich.console import Console

    from harness.status import trials_table

    loop, _ = make_loop(tmp_path, climb, max_trials=3)
    loop.run()
    rows = trial_rows(loop.job_dir)
    many = [f"hp_{i:02d}" for i in range(12)]
    for n, row in enumerate(rows):
        row.update({name: 0.001 * (n + 1) * (i + 1) for i, name in enumerate(many)})
        row["reason"] = "a reason far longer than any terminal column should show " * 3
    rows[0].update(status="RUNNING", reason="epoch 2/4")  # a live trial keeps its epoch
    rows[1].update(status="RUNNING", reason=None)  # not through its first epoch yet
    console = Console(width=80, record=True)
    console.print(trials_table(loop.job_dir, rows, width=80))
    text = console.export_text()
    assert max(map(len, text.splitlines())) <= 80, text
    header = text.split("┡")[0]
    assert "val_accuracy" in header and "duration" in header and "epochs" in header
    varying = ["quality", *many]
    shown = [name for name in varying if name in header]
    assert 0 < len(shown) < len(varying)  # as many as fit, not none and not all
    caption = " ".join(text.split("┘")[1].split())
    assert f"not shown ({len(varying) - len(shown)}," in caption
    assert all(name in caption for name in varying if name not in shown)
    assert "a reason" not in text  # at 80 columns a status is its word alone
    assert "RUNNING (epoch 2/4)" in text and "None" not in text
    console = Console(width=160, record=True)
    console.print(trials_table(loop.job_dir, rows, width=160))
    wide = console.export_text()
    assert max(map(len, wide.splitlines())) <= 160, wide
    assert "best" in wide.split("┡")[0] and "(a reason far" in wide
    assert "…" in wide  # the long reason is cut, not folded over many lines
    Console(width=80).print(trials_table(loop.job_dir, [], width=80))  # a job without trials


def test_changed_job_is_refused_on_the_same_directory(tmp_path):
    from harness.errors import UserError

    spec = validate_job(tiny_job(tmp_path), cross_check=False)
    job_dir = JobDir(spec.job_dir())
    _prepare_job_dir(job_dir, spec, overwrite=False)
    _write_spec(job_dir, spec)
    budget = validate_job(tiny_job(tmp_path, tuner={"max_trials": 9}), cross_check=False)
    _prepare_job_dir(job_dir, budget, overwrite=False)  # budgets may change
    # The same directory spelled otherwise (`harness resume runs/x` of an absolute output_dir).
    elsewhere = validate_job(tiny_job(tmp_path, output_dir="job"), cross_check=False)
    _prepare_job_dir(job_dir, elsewhere, overwrite=False)
    other = validate_job(tiny_job(tmp_path, tuner={"algorithm": "grid"}), cross_check=False)
    with pytest.raises(UserError, match="holds a different job.*tuner.algorithm"):
        _prepare_job_dir(job_dir, other, overwrite=False)


def test_time_budget_spans_resumes(tmp_path):
    loop, _ = make_loop(tmp_path, climb, max_trials=1)
    loop.run()
    elapsed = read_json(loop.job_dir.state_path)["elapsed_s"]
    assert elapsed > 0
    # A resume whose budget the first run already used up starts no new trial.
    loop2, executor2 = make_loop(tmp_path, climb, max_trials=5, time_budget_s=elapsed / 2)
    outcome = loop2.run()
    assert executor2.submitted == [] and outcome.completed == 1


def test_job_directory_of_another_format_is_refused(tmp_path):
    from harness.errors import UserError

    loop, _ = make_loop(tmp_path, climb, max_trials=1)
    (loop.job_dir.root / "format.json").write_text('{"version": 99}')
    with pytest.raises(UserError, match="format version 99; this harness reads version 1"):
        make_loop(tmp_path, climb, max_trials=1)


def test_leftovers_of_killed_writers_are_removed_at_start(tmp_path):
    loop, _ = make_loop(tmp_path, climb, max_trials=1)
    loop.run()
    root = loop.job_dir.root
    leftovers = [
        root / "trials" / "0" / ".tmp-123.weights.h5",
        root / "trials" / "0" / ".run.json.x1y2.tmp",
        root / "export" / "tiny" / ".tmp-abcd1234" / "saved_model.pb",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half-written")
    make_loop(tmp_path, climb, max_trials=1)
    assert not any(p.exists() for p in leftovers)
    assert not (root / "export" / "tiny" / ".tmp-abcd1234").exists()
    assert (root / "trials" / "0" / "run.json").exists()  # real records stay


def test_a_rerun_trial_gets_a_fresh_tensorboard_run(tmp_path):
    def interrupted(request):
        if request["trial_id"] == "1":
            yield {"loss": 1.0, "val_accuracy": 0.1}
            raise KeyboardInterrupt
        yield from climb(request)

    def tags(board):
        import tensorflow as tf

        return [
            value.tag
            for path in sorted(board.glob("events.out.tfevents*"))
            for event in tf.compat.v1.train.summary_iterator(str(path))
            for value in event.summary.value
        ]

    loop, _ = make_loop(tmp_path, interrupted, max_trials=2)
    loop.run()
    board = loop.job_dir.trial_board("1")
    assert tags(board) == [metadata.SESSION_START_INFO_TAG]  # started, never ended
    make_loop(tmp_path, climb, max_trials=2)[0].run()
    rerun = tags(board)  # one session, not two, and now closed
    assert rerun.count(metadata.SESSION_START_INFO_TAG) == 1
    assert rerun.count(metadata.SESSION_END_INFO_TAG) == 1


def test_status_reports_each_family_best_apart(tmp_path):
    from harness.status import best_per_family

    def by_family(request):
        values = request["hyperparameters"]["values"]
        bonus = {"rnn": 0.0, "pooled": 0.1}[values["family"]]
        yield {"loss": 1.0, "val_accuracy": 0.5 * values["quality"] + bonus}

    loop, _ = make_loop(tmp_path, by_family, max_trials=8, epochs=1)
    space = kt.HyperParameters()
    space.Choice("family", ["rnn", "pooled"], default="rnn")
    loop.oracle.update_space(space)
    loop.run()
    best = best_per_family(loop.job_dir)
    assert set(best) == {"rnn", "pooled"}
    for family, (trial_id, score) in best.items():
        same = [
            t.score
            for t in loop.oracle.trials.values()
            if t.hyperparameters.values["family"] == family
        ]
        assert score == max(same)
        assert loop.oracle.trials[trial_id].hyperparameters.values["family"] == family


def test_search_plot_from_the_job_directory(tmp_path, monkeypatch):
    import matplotlib.image

    from harness.plots import best_so_far

    loop, _ = make_loop(tmp_path, climb, max_trials=6, pruning={"rule": "asha"})
    outcome = loop.run()
    records = loop.job_dir.trial_records()
    times, best = best_so_far(records, "max")
    assert best == sorted(best) and best[-1] == outcome.best[1]  # a best-so-far curve
    assert times == sorted(times) and times[0] >= 0
    result = run_command(monkeypatch, "plot", str(loop.job_dir.root))
    assert result.exit_code == 0, result.output
    png = loop.job_dir.root / "search.png"
    assert f"wrote {png}" in result.stdout
    assert matplotlib.image.imread(png).shape[:2] == (450, 1200)


def test_resume_replays_mid_epoch_checks_as_the_rule_heard_them(tmp_path):
    """A trial stopped at a rung inside an epoch reported its check, not the partial epoch
    Keras validated after it: the replay for the pruning rule after a resume says the same."""
    pruning = {"rule": "asha", "grace_epochs": 0.5, "reduction_factor": 2}
    loop, _ = make_loop(tmp_path, climb, max_trials=2, epochs=4, pruning=pruning)
    loop.run()
    stopped, finished = sorted(loop.oracle.trials)  # the first: as if stopped at 0.5
    path = loop.job_dir.trial_dir(stopped) / "run.json"
    run = read_json(path)
    run["checks"] = [{"epochs_done": 0.5, "metrics": {"val_accuracy": 0.3}}]
    run["pruned"] = {"epochs_done": 0.5, "reason": "ASHA: ..."}
    path.write_text(json.dumps(run))
    curves = loop._curves()
    assert curves[stopped] == [(0.5, 0.3)]
    # The other trial (stopped at a whole-epoch rung, or not at all) keeps every epoch it ran.
    history = loop.oracle.trials[finished].metrics.get_history("val_accuracy")
    assert [epochs for epochs, _ in curves[finished]] == list(range(1, len(history) + 1))
    # Under `rung_averaging` the rule ranked the averaged weights at the whole-epoch rung 1:
    # the replay gives that score for epoch 1, not the epoch's own.
    path = loop.job_dir.trial_dir(finished) / "run.json"
    run = read_json(path)
    run["checks"] = [
        {"epochs_done": 0.5, "metrics": {"val_accuracy": 0.41}, "averaged": True},
        {"epochs_done": 1, "metrics": {"val_accuracy": 0.42}, "averaged": True},
    ]
    path.write_text(json.dumps(run))
    replayed = loop._curves()[finished]
    assert replayed[:2] == [(0.5, 0.41), (1, 0.42)]
    assert [epochs for epochs, _ in replayed[2:]] == list(range(2, len(history) + 1))


def climb_on(request):
    """`climb`, from the epoch where a trial continued by ASHA's promotion takes up."""
    first = int((request.get("continue_from") or {}).get("epochs_done", 0))
    quality = request["hyperparameters"]["values"]["quality"]
    epochs = request["job"]["tuner"]["epochs"]
    for epoch in range(first, epochs):
        yield {"loss": 1 - quality, "val_accuracy": quality * (epoch + 1) / epochs}


def test_asha_promotion_pauses_trials_and_continues_the_best_from_their_rung(tmp_path, monkeypatch):
    pruning = {"rule": "asha", "grace_epochs": 1, "reduction_factor": 3, "promotion": True}
    loop, executor = make_loop(tmp_path, climb_on, capacity=2, max_trials=9, pruning=pruning)
    shown = []  # the best so far, as live progress shows it
    show = loop._show_progress
    monkeypatch.setattr(loop, "_show_progress", lambda: (shown.append(loop.outcome.best), show()))
    outcome = loop.run()
    scores = [best[1] for best in shown if best]
    assert scores == sorted(scores) and scores[-1] == outcome.best[1]  # never goes back
    quality = {t.trial_id: t.hyperparameters.values["quality"] for t in loop.oracle.trials.values()}
    assert len(quality) == 9  # a continuation is the same trial, not a new draw
    # The first two draws met nobody at epoch 1 (rungs 1 and 3): both paused there, where the
    # stopping rule would have let them train all 9 epochs unopposed.
    first_two = executor.submitted[:2]
    assert all("continue_from" not in r for r in first_two)
    records = runs(loop)
    for request in first_two:
        record = records[request["trial_id"]]
        assert record.get("continued_from", [None])[0] == 1 or record["pruned"]["epochs_done"] == 1
    continued = [r for r in executor.submitted if r.get("continue_from")]
    assert continued, "no paused trial was continued"
    for request in continued:
        tid, rung = request["trial_id"], request["continue_from"]["epochs_done"]
        assert rung in (1, 3) and rung in records[tid]["continued_from"]
        assert request["continue_from"]["best"] > 0  # its score so far, for its checkpoint
    # duration_s is the last run's (paired with its fit_s by benchmarks/fixed_cost.py);
    # `harness status` shows total_s, every run of a continued trial.
    rows = {r["trial"]: r for r in trial_rows(loop.job_dir)}
    for tid in {r["trial_id"] for r in continued}:
        assert records[tid]["total_s"] > records[tid]["duration_s"] > 0
        assert rows[tid]["duration_s"] == records[tid]["total_s"]
    # The best draw is on top at every rung: it ends its 9 epochs, its history whole.
    best = max(quality, key=quality.get)
    assert outcome.best[0] == best and records[best]["status"] == "COMPLETED"
    history = loop.oracle.trials[best].metrics.get_history("val_accuracy")
    assert [o.step for o in history] == list(range(9))
    assert outcome.completed >= 1 and outcome.completed + outcome.pruned == 9
    paused = {t: r["pruned"]["epochs_done"] for t, r in records.items() if r["status"] == "PRUNED"}
    assert all("ASHA: paused at" in records[t]["pruned"]["reason"] for t in paused)
    # Recorded while the search ran: "it goes on once it ranks in the top 1/3"; shown after
    # it ended (no driver): where the trial stays, not a promise no search will keep.
    assert any("it goes on once" in records[t]["pruned"]["reason"] for t in paused)
    shown = {r["trial"]: r["reason"] for r in trial_rows(loop.job_dir) if r["trial"] in paused}
    assert shown and not any("it goes on once" in why for why in shown.values()), shown
    # A resume finds the paused trials again, from their records.
    oracle = make_oracle(loop.spec.tuner, loop.job_dir)
    again = TrialLoop(loop.spec, loop.job_dir, oracle, executor, QUIET)
    assert again._paused_trials() == paused
    strict_json_everywhere(loop.job_dir.root)


@pytest.mark.parametrize("min_trials", [None, 2])
def test_promotion_min_trials_lets_the_better_of_two_go_on(tmp_path, min_trials):
    """Two draws, factor 3: Algorithm 2 pauses both at epoch 1 (a rung of 2 has no top third);
    with `promotion_min_trials: 2` the better one trains on to the next rung at once. Either
    way, once the oracle has drawn both, no trial can come to rank them against: the better
    one is continued to its end (rather than the job ending with every trial paused)."""
    pruning = {"rule": "asha", "grace_epochs": 1, "reduction_factor": 3, "promotion": True}
    if min_trials:
        pruning["promotion_min_trials"] = min_trials
    loop, _ = make_loop(tmp_path, climb_on, capacity=1, max_trials=2, pruning=pruning)
    outcome = loop.run()
    quality = {t.trial_id: t.hyperparameters.values["quality"] for t in loop.oracle.trials.values()}
    better, worse = max(quality, key=quality.get), min(quality, key=quality.get)
    records = runs(loop)
    assert records[worse]["pruned"]["epochs_done"] == 1  # not the top of its rung: stays
    assert records[better]["status"] == "COMPLETED" and outcome.best[0] == better
    # It waited at epoch 1 for a third trial that never came (Algorithm 2), or (min 2) went
    # on there unless it was drawn first; then alone at epoch 3 in both.
    waited = records[better]["continued_from"]
    assert waited == [1, 3] if min_trials is None else waited[-1] == 3
    history = loop.oracle.trials[better].metrics.get_history("val_accuracy")
    assert [o.step for o in history] == list(range(9))
    assert (outcome.completed, outcome.pruned) == (1, 1)


def test_promotion_leaders_train_the_leader_past_a_rung_it_reaches_alone(tmp_path):
    """As above with `promotion_leaders`: the better of the two, alone at rung 3 but first at
    rung 1 (among 2), goes on there too and trains all 9 epochs."""
    pruning = {
        "rule": "asha",
        "grace_epochs": 1,
        "reduction_factor": 3,
        "promotion": True,
        "promotion_min_trials": 2,
        "promotion_leaders": True,
    }
    loop, _ = make_loop(tmp_path, climb_on, capacity=1, max_trials=2, pruning=pruning)
    outcome = loop.run()
    quality = {t.trial_id: t.hyperparameters.values["quality"] for t in loop.oracle.trials.values()}
    better = max(quality, key=quality.get)
    records = runs(loop)
    assert records[better]["status"] == "COMPLETED" and outcome.best[0] == better
    assert records[min(quality, key=quality.get)]["pruned"]["epochs_done"] == 1


def test_one_trial_at_a_time_is_asked_for_the_example_images(tmp_path):
    """Each slot's first trial used to make the example images before the driver had drawn
    any; now one trial is asked, and another only when the asked one ended without a result."""

    def some_fail(request):
        if request["trial_id"] in ("0", "3"):
            raise ValueError("cannot build this configuration")
        yield from climb(request)

    loop, executor = make_loop(tmp_path, some_fail, capacity=2, max_trials=6, epochs=2)
    loop.run()
    asked = {r["trial_id"]: r["examples"] for r in executor.submitted}
    # 0 and 1 start together (only 0 asked); 0 fails, so the next trial submitted is asked;
    # 3, not asked, fails too: that asks no other trial.
    assert asked == {"0": True, "1": False, "2": True, "3": False, "4": False, "5": False}
