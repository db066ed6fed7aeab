"""The tuning job, top-down: job dir -> data -> search space -> trials on Ray -> export.

The Keras Tuner oracle decides what to try (`create_trial`), hears the per-epoch metrics
(`update_trial`) and closes each trial (`end_trial`); Ray runs each trial in a worker process.
The oracle's state is saved after every step, so a killed driver resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

import keras_tuner as kt
import psutil
from keras_tuner.src.engine.metrics_tracking import MetricsTracker  # pinned: keras-tuner 1.4
from rich.console import Console

from harness.errors import UserError, headline, says_disk_full
from harness.execution import ExecutorLost
from harness.hparams import end_trial, write_experiment, write_trial
from harness.job import JobSpec, validate_job
from harness.jobdir import JobDir, atomic_write_json, read_json
from harness.oracles import PRUNED, make_oracle
from harness.progress import JobProgress
from harness.pruning import mid_epoch_points
from harness.space import make_hypermodel, populate_space
from harness.strategy import keep_driver_off_gpus
from harness.summaries import write_examples_once
from pipelines import PIPELINES
from pipelines.base import subset_notes
from pipelines.image_sources import SPLIT_METHOD
from pipelines.tfds_source import resolve_data_dir

# Keys that may change between runs of one job directory (budgets, resources, display).
# output_dir: the directory itself, however it is spelled (relative, absolute, moved).
RESUMABLE_CHANGES = {"resources", "export", "smoke", "description", "output_dir"}
RESUMABLE_TUNER_CHANGES = {
    "max_trials",
    "time_budget_s",
    "max_consecutive_failed_trials",
    "trial_time_limit_s",
}


@dataclass
class JobOutcome:
    """How a run of a job ended; the CLI maps it to an exit code."""

    job_dir: JobDir
    completed: int = 0  # trained for their whole schedule
    pruned: int = 0  # stopped early by the pruning rule (their best score counts)
    failed: int = 0
    best: tuple[str, float] | None = None
    interrupted: bool = False
    lost: str | None = None  # why the trials' executor went away (then `interrupted` too)
    stop_reason: str | None = None  # set when the failure limit ended the search
    exported: list[dict[str, Any]] = field(default_factory=list)


def tune(
    spec: JobSpec,
    console: Console,
    address: str | None = None,
    overwrite: bool = False,
    executor=None,
) -> JobOutcome:
    """Runs (or resumes) a whole job and exports its best models per the export policy.

    `executor`: a `RayExecutor` already starting (the CLI starts Ray and the workers while the
    driver imports TensorFlow); by default one is made here. Either way it is closed on return.
    """
    if executor is None:
        from harness.ray_execution import executor_for  # Ray only where trials really run

        executor = executor_for(spec, address)
    try:
        return _tune(spec, console, overwrite, executor)
    finally:
        executor.close()


def _tune(spec: JobSpec, console: Console, overwrite: bool, executor) -> JobOutcome:
    job_dir = JobDir(spec.job_dir())
    fresh = not job_dir.root.exists()
    try:
        return _tune_locked(job_dir, spec, console, overwrite, executor)
    except UserError:
        # Refused before its first write (missing data, a pinned value outside the space): a
        # new job leaves no directory holding only its lock behind.
        if fresh and job_dir.root.is_dir():
            # Under the lock: not while another driver (the one that refused us) holds it.
            with contextlib.suppress(UserError), job_dir.lock():
                if {p.name for p in job_dir.root.iterdir()} <= {"driver.lock", "driver.pid"}:
                    shutil.rmtree(job_dir.root, ignore_errors=True)
        raise


def _tune_locked(
    job_dir: JobDir, spec: JobSpec, console: Console, overwrite: bool, executor
) -> JobOutcome:
    with job_dir.lock():
        _prepare_job_dir(job_dir, spec, overwrite)
        console.print(f"[bold]job[/] {spec.name} -> {job_dir.root}")
        executor.wait_started()  # its thread must not import while the data code imports TFDS
        pipeline = PIPELINES.get(spec.data.pipeline)(spec.data)
        pipeline.check_available()
        meta = pipeline.describe()
        data_record = check_same_data(job_dir, spec, meta, console)
        console.print(
            f"[bold]data[/] {spec.data.source()}: "
            f"{meta.num_train} train / {meta.num_validation} validation / {meta.num_test} test",
            soft_wrap=True,  # long file paths: one line in a log, not folded
        )
        for note in subset_notes(spec.data, meta):
            console.print(f"[yellow]note[/]: {note}", soft_wrap=True)
        oracle = make_oracle(spec.tuner, job_dir)
        keep_driver_off_gpus()
        hypermodel = make_hypermodel(spec, meta)
        _check_promotion(spec, hypermodel)
        space = spec.search_space
        populate_space(oracle, hypermodel, space.fixed, pipeline, space.choices)
        # Written once the space accepted the job's pinned values: a refused job leaves no
        # job.json behind to refuse its corrected rerun.
        _write_spec(job_dir, spec)
        atomic_write_json(job_dir.root / "data.json", data_record)
        write_experiment(
            spec,
            oracle.get_space(),
            job_dir.tensorboard_dir,
            getattr(hypermodel, "metrics", ["accuracy"]),
        )
        _warn_about_budget(spec, oracle, console)
        with executor:
            outcome = TrialLoop(spec, job_dir, oracle, executor, console).run()
        _plot(job_dir, console)
        if outcome.interrupted:
            console.print(
                f"{outcome.lost or 'interrupted'}; state saved. "
                f"Resume with: harness resume {job_dir.root}",
                soft_wrap=True,
            )
            return outcome
        if spec.export.policy != "none" and outcome.best is not None:
            from harness.export import export_trials

            top = spec.export.top_k if spec.export.policy == "top_k" else 1
            outcome.exported = export_trials(job_dir, top, console, reuse=True)
        return outcome


def _check_promotion(spec: JobSpec, hypermodel) -> None:
    """A trial paused inside an epoch continues with that epoch's rest as a shorter `fit`; a
    space with its own `fit` (training phases laid out over the epochs) cannot be split so."""
    pruning = spec.tuner.pruning
    inside = mid_epoch_points(pruning, spec.tuner.epochs)
    if pruning.promotion and inside and type(hypermodel).fit is not kt.HyperModel.fit:
        raise UserError(
            f"tuner.pruning: with promotion, a trial paused at the rung {inside[0]:g} epochs, "
            f"inside an epoch, continues from there, which the {spec.search_space.name} space "
            "cannot do (it trains in phases of its own); use a whole-number grace_epochs"
        )


def _plot(job_dir: JobDir, console: Console) -> None:
    """search.png in the job directory; a picture that cannot be drawn is reported, and the
    job (its results are on disk already) goes on to its export."""
    from harness.plots import plot_search

    try:
        path = plot_search(job_dir)
    except Exception as e:  # noqa: BLE001 - reported; the search's results are already saved
        console.print(f"[yellow]warning:[/] no search.png: {type(e).__name__}: {e}")
        return
    console.print(f"search plot: {path}", highlight=False)


def _warn_about_budget(spec: JobSpec, oracle: kt.Oracle, console: Console) -> None:
    """Bayesian optimisation samples at random until it has its initial points: say so when
    the whole budget fits in them."""
    if spec.tuner.algorithm != "bayesian":
        return
    initial = spec.tuner.bayesian_initial_points or max(3 * len(oracle.get_space().space), 3)
    if spec.tuner.max_trials <= initial:
        console.print(
            f"[yellow]warning:[/] tuner.max_trials {spec.tuner.max_trials} <= the Bayesian "
            f"oracle's {initial} random initial points: this search is random search. Raise "
            "max_trials, lower tuner.bayesian_initial_points, or use algorithm: random with "
            "tuner.pruning.",
            soft_wrap=True,
        )


def _prepare_job_dir(job_dir: JobDir, spec: JobSpec, overwrite: bool) -> None:
    new = spec.model_dump(mode="json")
    if overwrite:
        for child in job_dir.root.iterdir():
            if child.name not in ("driver.lock", "driver.pid"):
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    job_dir.check_format()
    job_dir.remove_leftovers()  # we hold the lock: no writer of this job is alive
    old = read_json(job_dir.spec_path)
    if old is not None:
        # Through the current schema first, so options added since then compare as defaults.
        old = validate_job(old, source=str(job_dir.spec_path), cross_check=False).model_dump(
            mode="json"
        )
        difference = _first_difference(_comparable(old), _comparable(new))
        if difference:
            raise UserError(
                f"{job_dir.root} holds a different job ({difference}); use another output_dir "
                "or --overwrite to start over"
            )
        before, now = _replicas(old["resources"]), _replicas(new["resources"])
        if before != now:
            batch = spec.data.model_dump().get("batch_size")
            raise UserError(
                f"{job_dir.root}: resources give {now} replica(s) per trial where the job started "
                f"with {before} (gpus_per_trial / logical_cpu_devices), so the global batch "
                f"would change ({batch} per replica); keep them, or use another output_dir"
            )


def _replicas(resources: dict[str, Any]) -> int:
    """Replicas of a trial's MirroredStrategy as `resources` ask for them (strategy.py)."""
    gpus = resources.get("gpus_per_trial") or 0
    if gpus:
        return max(1, int(gpus))
    return resources.get("logical_cpu_devices") or 1


def _write_spec(job_dir: JobDir, spec: JobSpec) -> None:
    atomic_write_json(job_dir.spec_path, spec.model_dump(mode="json"))
    job_dir.write_format()


def check_same_data(job_dir: JobDir, spec: JobSpec, meta, console: Console) -> dict[str, Any]:
    """What the job's data was when it started (data.json): a resume on other data (another
    copy, more or fewer examples, other shapes or classes) is refused, naming the difference;
    a moved data directory holding the same data is noted."""
    record = {
        "fingerprint": meta.fingerprint,
        "input_shape": list(meta.input_shape),
        "num_classes": meta.num_classes,
        "class_names": list(meta.class_names),
        "num_train": meta.num_train,
        "num_validation": meta.num_validation,
        "num_test": meta.num_test,
    }
    if getattr(spec.data, "stratify", False):
        # Which examples validate: a resume across a change of the stratified split (numpy's
        # before scikit-learn's) would rank its new trials on another validation set.
        record["split"] = SPLIT_METHOD
    if getattr(spec.data, "dataset", None):
        record["data_dir"] = str(resolve_data_dir(spec.data.data_dir))
    contents = spec.data.source_contents()
    if contents:  # the user's files: edited in place, they are other data under the same name
        record["contents"] = contents
    old = read_json(job_dir.root / "data.json")
    if old is not None:
        if "contents" not in old:  # a job started before contents were recorded
            record.pop("contents", None)
        moved = old.get("data_dir") != record.get("data_dir")
        difference = _first_difference(
            {k: v for k, v in old.items() if k != "data_dir"},
            {k: v for k, v in record.items() if k != "data_dir"},
        )
        if difference:
            then = f" (data dir then: {old['data_dir']})" if old.get("data_dir") else ""
            raise UserError(
                f"{job_dir.root}: the data differ from the job's start ({difference}); "
                f"use the data it started on{then}"
            )
        if moved:
            console.print(
                f"note: data dir {record.get('data_dir')} (was {old.get('data_dir')}); "
                "the same data, so the job continues",
                soft_wrap=True,
            )
    return record


def _comparable(spec: dict[str, Any]) -> dict[str, Any]:
    spec = {k: v for k, v in spec.items() if k not in RESUMABLE_CHANGES}
    spec["tuner"] = {k: v for k, v in spec["tuner"].items() if k not in RESUMABLE_TUNER_CHANGES}
    spec["training"] = {k: v for k, v in spec["training"].items() if k != "verbose"}
    return spec


def _first_difference(old: Any, new: Any, path: str = "") -> str | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = _first_difference(old.get(key), new.get(key), f"{path}.{key}".lstrip("."))
            if found:
                return found
        return None
    return None if old == new else f"{path}: {old!r} before, {new!r} now"


class TrialLoop:
    """Keeps up to `max_concurrent_trials` trials running until the oracle or a budget stops.

    Works with any executor (harness/execution.py): Ray actors in a job, `FakeExecutor` in the
    loop's unit tests.
    """

    def __init__(self, spec: JobSpec, job_dir: JobDir, oracle: kt.Oracle, executor, console):
        self.spec = spec
        self.job_dir = job_dir
        self.oracle = oracle
        self.executor = executor
        self.console = console
        self.running: dict[Any, tuple[str, kt.engine.trial.Trial]] = {}
        self.live: dict[str, dict[str, Any]] = {}  # trial id -> its latest epoch report
        self._submitted: dict[Any, float] = {}  # handle -> when its trial was submitted
        self.started = time.time()
        self._earlier_elapsed = read_json(job_dir.state_path, {}).get("elapsed_s", 0.0)
        self._failures_in_a_row = 0
        self._examples: list[dict[str, Any]] = []  # example batches trials sent, to draw
        # The `examples` runs (by augment_strength) whose images a running trial (the value) was
        # asked to send: one trial each, not every slot's first trial before any is drawn.
        self._examples_asked: dict[Any, str] = {}
        # ASHA's promotions: paused trials (id -> the rung, in epochs, where each paused) and
        # the continued ones running now (id -> the rung each continues from).
        self._paused: dict[str, float] = {}
        self._continuing: dict[str, float] = {}
        self.outcome = JobOutcome(job_dir)
        self._worker_spec = spec.worker_form()

    def run(self) -> JobOutcome:
        free = [f"tuner{i}" for i in range(self.spec.resources.max_concurrent_trials)]
        self.progress = JobProgress(
            self.console, self.spec.tuner.max_trials, self.spec.tuner.objective.name
        )
        with self.progress:
            self._count_finished()
            self._announce_resume()
            self.executor.seed(self._curves())
            self._paused = self._paused_trials()
            try:
                self._loop(free)
            except KeyboardInterrupt:
                self.executor.cancel(list(self.running))
                self.outcome.interrupted = True
            except ExecutorLost as e:  # its trials' records stay RUNNING: a resume reruns them
                self.outcome.interrupted, self.outcome.lost = True, str(e)
            except UserError:  # a full disk: every trial would fail the same way
                self.executor.cancel(list(self.running))
                raise
            finally:
                self._save_elapsed()
        return self.outcome

    def _loop(self, free: list[str]) -> None:
        stopping = False
        drawn_all = False  # the oracle has no new trial; paused ones may still be continued
        while True:
            while free and not (stopping := stopping or self._stopping()):
                promoted = self._promotion(drawn_all)
                if promoted is not None:
                    self._submit(free.pop(0), *promoted)
                    continue
                if drawn_all:
                    break
                trial = self.oracle.create_trial(free[0])
                if trial.status == kt.engine.trial.TrialStatus.STOPPED:
                    drawn_all = True  # a last look at the paused trials, no company to wait for
                    continue
                if trial.status == kt.engine.trial.TrialStatus.RUNNING:
                    self._submit(free.pop(0), trial)
                    continue
                break  # IDLE: Hyperband waits for the running trials of its round
            self._draw_examples()  # after the submissions: no trial waits for the drawing
            if not self.running:
                return
            for handle in self.executor.wait(list(self.running), timeout=1.0):
                tuner_id, trial = self.running.pop(handle)
                del self._submitted[handle]
                result, error = self.executor.result(handle)
                _refuse_a_full_disk(error, trial.trial_id, self.job_dir)
                self._finish(trial, result, error)
                free.append(tuner_id)
            free.extend(self._stop_overdue())
            self._take_reports()

    def _promotion(self, drawn_all: bool) -> tuple[kt.engine.trial.Trial, float] | None:
        """A paused trial that now ranks in the top of its rung, reopened in the oracle to be
        continued from that rung (ASHA with `promotion: true`); None otherwise. Once the oracle
        has `drawn_all` its trials, a rung ranks however few reached it (`PromotingASHA`)."""
        if not self._paused:
            return None
        found = self.executor.promotion(dict(self._paused), drawn_all)
        if found is None:
            return None
        trial_id, rung = found
        del self._paused[trial_id]
        return self.oracle.trials[trial_id], rung

    def _paused_trials(self) -> dict[str, float]:
        """After a resume: the paused trials (ASHA's promotions), from their records."""
        if not self.spec.tuner.pruning.promotion:
            return {}
        paused = {}
        for t in self.oracle.trials.values():
            if t.status == "COMPLETED" and (t.message or "").startswith(PRUNED):
                run = read_json(self.job_dir.trial_dir(t.trial_id) / "run.json", {})
                if run.get("pruned"):
                    paused[t.trial_id] = float(run["pruned"]["epochs_done"])
        return paused

    def _elapsed(self) -> float:
        """Tuning time of this job over all its runs (resumes continue the same budget)."""
        return self._earlier_elapsed + time.time() - self.started

    def _stopping(self) -> bool:
        """No trial starts any more: the time budget is spent or the search was stopped."""
        return self._budget_spent() or self.outcome.stop_reason is not None

    def _budget_spent(self) -> bool:
        budget = self.spec.tuner.time_budget_s
        return budget is not None and self._elapsed() >= budget

    def _submit(self, tuner_id: str, trial, continue_from: float | None = None) -> None:
        """Starts `trial`; with `continue_from` (a rung, in epochs), continues a paused trial
        from the weights it paused with, in the same records and TensorBoard run."""
        trial_dir = self.job_dir.trial_dir(trial.trial_id)
        previous = read_json(trial_dir / "run.json", {})
        (trial_dir / "progress.json").unlink(missing_ok=True)
        request = {
            "job": self._worker_spec,
            "job_dir": str(self.job_dir.root),
            "trial_id": trial.trial_id,
            "hyperparameters": trial.hyperparameters.get_config(),
            "submitted_at": time.time(),
        }
        strength = trial.hyperparameters.values.get("augment_strength")
        request["examples"] = strength not in self._examples_asked
        self._examples_asked.setdefault(strength, trial.trial_id)
        run = {
            "status": "RUNNING",
            "runs": previous.get("runs", 0) + 1,
            "submitted": request["submitted_at"],
        }
        if continue_from is None:
            if previous:  # a re-run starts a fresh TensorBoard run, not a second curve
                shutil.rmtree(self.job_dir.trial_board(trial.trial_id), ignore_errors=True)
            write_trial(
                self.job_dir.trial_board(trial.trial_id),
                trial.trial_id,
                trial.hyperparameters.values,
            )
        else:
            self._reopen(tuner_id, trial)
            best = float(trial.score)  # its checkpoint's score: the continuation must beat it
            request["continue_from"] = {"epochs_done": continue_from, "best": best}
            self._continuing[trial.trial_id] = continue_from
            run = {
                **previous,
                **run,
                "pruned": None,
                "continued_from": [*previous.get("continued_from", []), continue_from],
            }
            self.progress.trial_line(
                f"trial {trial.trial_id} [cyan]continues[/] from {continue_from:g} epochs "
                "(it now ranks in the top of that rung)"
            )
        atomic_write_json(trial_dir / "run.json", run)
        handle = self.executor.submit(request)
        self.running[handle] = (tuner_id, trial)
        self._submitted[handle] = request["submitted_at"]

    def _reopen(self, tuner_id: str, trial) -> None:
        """Makes a paused trial the oracle's running trial of `tuner_id` again (saved, so a
        driver killed meanwhile re-runs it on resume like any interrupted trial)."""
        trial.status = kt.engine.trial.TrialStatus.RUNNING
        self.oracle.ongoing_trials[tuner_id] = trial
        if trial.trial_id in self.oracle.end_order:  # it is appended again when it ends
            self.oracle.end_order.remove(trial.trial_id)
        self.oracle._save_trial(trial)
        self.oracle.save()

    def _stop_overdue(self) -> list[str]:
        """Kills trials past `tuner.trial_time_limit_s`; returns the slots they freed."""
        limit = self.spec.tuner.trial_time_limit_s
        if limit is None:
            return []
        freed = []
        now = time.time()
        for handle, (tuner_id, trial) in list(self.running.items()):
            ran = now - self._submitted[handle]
            if ran > limit:
                self.executor.kill(handle)
                del self.running[handle], self._submitted[handle]
                epochs = self.live.get(trial.trial_id, {}).get("epoch", -1) + 1
                error = (
                    f"trial time limit of {limit:g} s exceeded (stopped after {ran:.0f} s, "
                    f"{epochs} epochs done)"
                )
                self._finish(trial, None, error)
                freed.append(tuner_id)
        return freed

    def _take_reports(self) -> None:
        """Per-epoch reports that reached the channel: live progress of running trials."""
        for report in self.executor.drain():
            self.live[report["trial_id"]] = report
        self._show_progress()

    def _draw_examples(self) -> None:
        """The example images the first trials sent, in TensorBoard's `examples` run."""
        while self._examples:
            write_examples_once(self._examples.pop(0))

    def _finish(self, trial, result: dict[str, Any] | None, error: str | None) -> None:
        continued = self._continuing.pop(trial.trial_id, None)
        if result is not None and continued is not None:
            result = self._with_earlier_epochs(trial, result, int(continued))
        if result is None:
            strength = trial.hyperparameters.values.get("augment_strength")
            if self._examples_asked.get(strength) == trial.trial_id:
                del self._examples_asked[strength]  # it sent no images: ask the next trial
        else:
            if result.get("examples"):
                self._examples.append(result["examples"])
            error = self._report_epochs(trial, result)
        trial.status = "FAILED" if error else "COMPLETED"
        pruned = (result or {}).get("pruned") if not error else None
        trial.message = error or (
            f"{PRUNED} {pruned['epochs_done']} epochs: {pruned['reason']}" if pruned else None
        )
        self.oracle.end_trial(trial)
        self.oracle.save()  # end_trial saves before it drops the trial from ongoing_trials
        if pruned and self.spec.tuner.pruning.promotion:
            self._paused[trial.trial_id] = float(pruned["epochs_done"])
        self._failures_in_a_row = self._failures_in_a_row + 1 if error else 0
        self._write_run_record(trial, result, error, pruned)
        self._end_session(trial, result, error, pruned)
        self._save_elapsed()
        self._count_finished()
        self._print_trial(trial, result, error, pruned)
        self.live.pop(trial.trial_id, None)
        limit = self.spec.tuner.max_consecutive_failed_trials
        if self._failures_in_a_row >= limit and self.outcome.stop_reason is None:
            self.outcome.stop_reason = f"{limit} trials in a row failed (the failure limit)"
            self.progress.trial_line(
                f"[red]search stopped:[/] {self.outcome.stop_reason}; no new trial is started"
            )

    def _end_session(self, trial, result, error, pruned) -> None:
        """Closes the trial's HParams session with its status, best score and reason."""
        best = None
        if not error and trial.score is not None:
            best = (trial.score, int(trial.best_step or 0))
        reason = error or (
            f"stopped after {pruned['epochs_done']} epochs: {pruned['reason']}" if pruned else None
        )
        end_trial(
            self.spec,
            self.job_dir.trial_board(trial.trial_id),
            "PRUNED" if pruned else trial.status,
            reason,
            best,
            len((result or {}).get("epochs", [])),
            trial.hyperparameters.values,
        )

    def _with_earlier_epochs(self, trial, result: dict[str, Any], first: int) -> dict[str, Any]:
        """A continued trial's result with the epochs it ran before its pause (from the
        oracle's record) ahead of the continuation's own, which start at epoch `first`; its
        mid-epoch checks likewise."""
        metrics = self.oracle.trials[trial.trial_id].metrics
        earlier: dict[int, dict[str, float]] = {}
        for name in metrics.metrics:
            for observation in metrics.get_history(name):
                if observation.step < first:
                    earlier.setdefault(int(observation.step), {})[name] = float(observation.mean())
        run = read_json(self.job_dir.trial_dir(trial.trial_id) / "run.json", {})
        return {
            **result,
            "epochs": [{"epoch": e, "metrics": earlier[e]} for e in sorted(earlier)]
            + result["epochs"],
            "checks": (run.get("checks") or []) + (result.get("checks") or []),
        }

    def _report_epochs(self, trial, result: dict[str, Any]) -> str | None:
        """Replays the final attempt's epochs into the oracle (a fresh metrics history, so a
        retried trial is not counted twice); a trial without a finite objective fails."""
        objective = self.spec.tuner.objective.name
        values = [e["metrics"].get(objective) for e in result["epochs"]]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if not result["epochs"]:
            return "no epoch ran (nothing to train)"
        if not finite:
            return f"the objective {objective} was never reported as a finite number"
        trial.hyperparameters = kt.HyperParameters.from_config(result["hyperparameters"])
        self.oracle.trials[trial.trial_id].metrics = MetricsTracker()
        for entry in result["epochs"]:
            metrics = {k: v for k, v in entry["metrics"].items() if math.isfinite(v)}
            self.oracle.update_trial(trial.trial_id, metrics, step=entry["epoch"])
        return None

    def _write_run_record(self, trial, result, error, pruned) -> None:
        path = self.job_dir.trial_dir(trial.trial_id) / "run.json"
        run = read_json(path, {})
        status = "PRUNED" if pruned else trial.status
        run.update(status=status, ended=time.time(), error=error, pruned=pruned)
        run["driver_rss_mb"] = psutil.Process().memory_info().rss / 2**20
        # duration_s: this run (the fixed-cost benchmark pairs it with this run's fit_s);
        # total_s: with the runs a promotion continued, as `harness status` shows it.
        earlier = (
            run.get("total_s", run.get("duration_s", 0.0)) if run.get("continued_from") else 0.0
        )
        run["duration_s"] = run["ended"] - run.get("submitted", run["ended"])
        run["total_s"] = earlier + run["duration_s"]
        if result:
            run.update({k: result[k] for k in RUN_FIELDS if k in result})
        atomic_write_json(path, run)

    def _save_elapsed(self) -> None:
        atomic_write_json(self.job_dir.state_path, {"elapsed_s": self._elapsed()})

    def _count_finished(self) -> None:
        trials = self.oracle.trials.values()
        # The oracle's own record says which trials were pruned (it persists across resumes).
        pruned = {t.trial_id for t in trials if (t.message or "").startswith(PRUNED)}
        self.outcome.completed = sum(
            t.status == "COMPLETED" and t.trial_id not in pruned for t in trials
        )
        self.outcome.pruned = len(pruned)
        self.outcome.failed = sum(t.status == "FAILED" for t in trials)
        # A paused trial being continued is RUNNING in the oracle again (which then leaves it
        # out of its best trials), but its score so far still stands: the best never goes back.
        scored = [
            t
            for t in trials
            if (t.status == "COMPLETED" or t.trial_id in self._continuing)
            and t.score is not None
            and math.isfinite(t.score)
        ]
        sign = 1 if self.spec.tuner.objective.direction == "max" else -1
        best = max(scored, key=lambda t: sign * t.score, default=None)
        self.outcome.best = (best.trial_id, best.score) if best else None
        self._show_progress()

    def _curves(self) -> dict[str, list[tuple[int, float]]]:
        """Each finished trial's objective per epochs done (mid-epoch checks included), for the
        pruning rule."""
        name = self.spec.tuner.objective.name
        curves = {}
        for t in self.oracle.trials.values():
            if t.status == "COMPLETED" and t.metrics.exists(name):
                history = t.metrics.get_history(name)
                run = read_json(self.job_dir.trial_dir(t.trial_id) / "run.json", {})
                # A trial stopped mid-epoch reported no epoch past that point while it ran
                # (its partial epoch's score is its check's): replay what the rule heard.
                stop = (run.get("pruned") or {}).get("epochs_done", float("inf"))
                curve = {int(o.step) + 1: float(o.value[0]) for o in history if o.step + 1 <= stop}
                # Checks after: at a whole-epoch rung under `rung_averaging` the rule ranked
                # the averaged weights' score, not the epoch's.
                curve.update(
                    (c["epochs_done"], c["metrics"][name])
                    for c in run.get("checks") or []
                    if name in c["metrics"]
                )
                curves[t.trial_id] = sorted(curve.items())
        return curves

    def _announce_resume(self) -> None:
        o = self.outcome
        again = len(self.oracle._retry_queue)
        if o.completed + o.pruned + o.failed + again == 0:
            return
        self.progress.trial_line(
            f"resuming: {o.completed} completed, {o.pruned} pruned and {o.failed} failed trials "
            f"are kept; {again} interrupted trial(s) run again; at most "
            f"{max(0, self.spec.tuner.max_trials - len(self.oracle.trials))} new trial(s)"
        )

    def _show_progress(self) -> None:
        running = {trial.trial_id: self._live_progress(trial) for _, trial in self.running.values()}
        done = self.outcome.completed + self.outcome.pruned + self.outcome.failed
        self.progress.update(done, running, self.outcome.failed, self.outcome.best)

    def _live_progress(self, trial) -> dict[str, Any]:
        """{epoch (done), epochs (planned), metrics} of a running trial, {} before its first."""
        report = self.live.get(trial.trial_id)
        if report is None:
            return {}
        planned = trial.hyperparameters.values.get("tuner/epochs", self.spec.tuner.epochs)
        return {"epoch": report["epoch"] + 1, "epochs": planned, "metrics": report["metrics"]}

    def _print_trial(self, trial, result, error, pruned) -> None:
        values = {
            k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")
        }
        if trial.status != "COMPLETED":
            first = headline(error or trial.message or "objective is not a number")
            self.progress.trial_line(f"trial {trial.trial_id} [red]FAILED[/]: {first}")
            return
        objective = self.spec.tuner.objective.name
        fit = result["timings"].get("fit_s", 0.0)
        stopped = "paused at" if self.spec.tuner.pruning.promotion else "pruned after"
        done = (
            f"[yellow]{stopped}[/] {pruned['epochs_done']:g} epochs" if pruned else "[green]done[/]"
        )
        self.progress.trial_line(
            f"trial {trial.trial_id} {done} {objective}={trial.score:.4f} "
            f"fit {fit:.1f}s  {_compact(values)}"
        )


# run_trial's result fields kept in run.json (benchmarks read them).
RUN_FIELDS = (
    "timings",
    "node",
    "node_id",
    "pid",
    "gpu_ids",
    "attempts",
    "replicas",
    "global_batch_size",
    "worker_rss_mb",
    "tensorflow_peak_mb",
    "seed",
    "started",
    "warm_start_from",
    "checks",  # mid-epoch validations at pruning rungs, replayed to the rule on resume
)


def _refuse_a_full_disk(error: str | None, trial_id: str, job_dir: JobDir) -> None:
    """A trial that failed on a full disk did not fail: the search stops with one line (exit
    2), the trial left to run again on resume, instead of every next trial failing too."""
    if not error or not says_disk_full(error):
        return
    line = next(ln for ln in error.splitlines() if says_disk_full(ln))
    raise UserError(
        f"no space left on the device (trial {trial_id}: {line.strip()[:200]}); free some, "
        f"then harness resume {job_dir.root}"
    )


def _compact(values: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(values.items())
    )
