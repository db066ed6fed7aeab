"""The tuning job, top-down: job dir -> data -> search space -> trials on Ray -> export.

The Keras Tuner oracle decides what to try (`create_trial`), hears the per-epoch metrics
(`update_trial`) and closes each trial (`end_trial`); Ray runs each trial in a worker process.
The oracle's state is saved after every step, so a killed driver resumes where it stopped.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from typing import Any

import keras_tuner as kt
import psutil
from rich.console import Console

from harness.errors import UserError
from harness.execution import RayExecutor
from harness.hparams import write_experiment, write_trial
from harness.job import JobSpec, validate_job
from harness.jobdir import JobDir, atomic_write_json, read_json
from harness.oracles import make_oracle
from harness.progress import JobProgress
from harness.space import make_hypermodel, populate_space
from pipelines import PIPELINES
from pipelines.tfds_source import resolve_data_dir

# Keys that may change between runs of one job directory (budgets, resources, display).
RESUMABLE_CHANGES = {"resources", "export", "smoke", "description"}
RESUMABLE_TUNER_CHANGES = {"max_trials", "time_budget_s", "max_consecutive_failed_trials"}


@dataclass
class JobOutcome:
    job_dir: JobDir
    completed: int = 0
    failed: int = 0
    best: tuple[str, float] | None = None
    interrupted: bool = False
    exported: list[dict[str, Any]] = field(default_factory=list)


def tune(
    spec: JobSpec, console: Console, address: str | None = None, overwrite: bool = False
) -> JobOutcome:
    """Runs (or resumes) a whole job and exports its best models per the export policy."""
    job_dir = JobDir(spec.job_dir())
    with job_dir.lock():
        _prepare_job_dir(job_dir, spec, overwrite)
        console.print(f"[bold]job[/] {spec.name} -> {job_dir.root}")
        pipeline = PIPELINES.get(spec.data.pipeline)(spec.data)
        pipeline.check_available()
        meta = pipeline.describe()
        console.print(
            f"[bold]data[/] {getattr(spec.data, 'dataset', spec.data.pipeline)}: "
            f"{meta.num_train} train / {meta.num_validation} validation / {meta.num_test} test"
        )
        oracle = make_oracle(spec.tuner, job_dir)
        hypermodel = make_hypermodel(spec, meta)
        populate_space(oracle, hypermodel, spec.search_space.fixed, pipeline)
        write_experiment(
            spec,
            oracle.get_space(),
            job_dir.tensorboard_dir,
            getattr(hypermodel, "metrics", ["accuracy"]),
        )
        with RayExecutor(spec.resources, address) as executor:
            outcome = TrialLoop(spec, job_dir, oracle, executor, console).run()
        if outcome.interrupted:
            console.print(f"interrupted; state saved. Resume with: harness resume {job_dir.root}")
            return outcome
        if spec.export.policy != "none" and outcome.best is not None:
            from harness.export import export_trials

            top = spec.export.top_k if spec.export.policy == "top_k" else 1
            outcome.exported = export_trials(job_dir, top, console)
        return outcome


def resume_spec(job_dir: JobDir) -> JobSpec:
    """The spec a job directory was started with, for `harness resume`."""
    return validate_job(job_dir.read_spec(), source=str(job_dir.spec_path))


def _prepare_job_dir(job_dir: JobDir, spec: JobSpec, overwrite: bool) -> None:
    new = spec.model_dump(mode="json")
    if overwrite:
        for child in job_dir.root.iterdir():
            if child.name not in ("driver.lock", "driver.pid"):
                shutil.rmtree(child) if child.is_dir() else child.unlink()
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
    atomic_write_json(job_dir.spec_path, new)


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
    """Keeps up to `max_concurrent_trials` trials running until the oracle or budget stops."""

    def __init__(self, spec: JobSpec, job_dir: JobDir, oracle: kt.Oracle, executor, console):
        self.spec = spec
        self.job_dir = job_dir
        self.oracle = oracle
        self.executor = executor
        self.console = console
        self.running: dict[Any, tuple[str, kt.engine.trial.Trial]] = {}
        self.started = time.time()
        self._earlier_elapsed = read_json(job_dir.state_path, {}).get("elapsed_s", 0.0)
        self.outcome = JobOutcome(job_dir)
        # Workers (maybe on other nodes) read data from the directory the driver resolved.
        self._worker_spec = spec.model_dump(mode="json")
        if "data_dir" in self._worker_spec["data"]:
            self._worker_spec["data"]["data_dir"] = str(resolve_data_dir(spec.data.data_dir))

    def run(self) -> JobOutcome:
        free = [f"tuner{i}" for i in range(self.spec.resources.max_concurrent_trials)]
        self.progress = JobProgress(
            self.console, self.spec.tuner.max_trials, self.spec.tuner.objective.name
        )
        with self.progress:
            self._count_finished()
            try:
                self._loop(free)
                self._save_elapsed()
            except KeyboardInterrupt:
                self.executor.cancel(list(self.running))
                self.outcome.interrupted = True
            except RuntimeError as e:  # Keras Tuner: too many consecutive failed trials
                self.executor.cancel(list(self.running))
                self.console.print(f"[red]search stopped:[/] {str(e).splitlines()[0]}")
        return self.outcome

    def _loop(self, free: list[str]) -> None:
        stopping = False
        while True:
            stopping = stopping or self._budget_spent()
            while free and not stopping:
                trial = self.oracle.create_trial(free[0])
                if trial.status == kt.engine.trial.TrialStatus.STOPPED:
                    stopping = True
                elif trial.status == kt.engine.trial.TrialStatus.RUNNING:
                    self._submit(free.pop(0), trial)
                    continue
                break  # IDLE: Hyperband waits for the running trials of its round
            if not self.running:
                return
            for ref in self.executor.wait(list(self.running), timeout=1.0):
                tuner_id, trial = self.running.pop(ref)
                self._finish(ref, trial)
                free.append(tuner_id)
            self._show_progress()

    def _elapsed(self) -> float:
        """Tuning time of this job over all its runs (resumes continue the same budget)."""
        return self._earlier_elapsed + time.time() - self.started

    def _budget_spent(self) -> bool:
        budget = self.spec.tuner.time_budget_s
        return budget is not None and self._elapsed() >= budget

    def _submit(self, tuner_id: str, trial) -> None:
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
        run = {
            "status": "RUNNING",
            "runs": previous.get("runs", 0) + 1,
            "submitted": request["submitted_at"],
        }
        atomic_write_json(trial_dir / "run.json", run)
        write_trial(self.job_dir.tensorboard_dir, trial.trial_id, trial.hyperparameters.values)
        self.running[self.executor.submit(request)] = (tuner_id, trial)

    def _finish(self, ref, trial) -> None:
        result, error = self.executor.result(ref)
        if result is not None:
            error = self._report_epochs(trial, result)
        trial.status = "FAILED" if error else "COMPLETED"
        trial.message = error
        try:
            self.oracle.end_trial(trial)
        finally:  # also when end_trial stops the search after too many failures in a row
            self.oracle._save_trial(self.oracle.trials[trial.trial_id])
            self.oracle.save()  # end_trial saves before dropping the trial from ongoing_trials
            self._write_run_record(trial, result, error)
            self._save_elapsed()
            self._count_finished()
            self._print_trial(trial, result, error)

    def _report_epochs(self, trial, result: dict[str, Any]) -> str | None:
        if not result["epochs"]:
            return "no epoch ran (nothing to train)"
        trial.hyperparameters = kt.HyperParameters.from_config(result["hyperparameters"])
        for entry in result["epochs"]:
            self.oracle.update_trial(trial.trial_id, entry["metrics"], step=entry["epoch"])
        return None

    def _write_run_record(self, trial, result, error) -> None:
        path = self.job_dir.trial_dir(trial.trial_id) / "run.json"
        run = read_json(path, {})
        run.update(status=trial.status, ended=time.time(), error=error)
        run["driver_rss_mb"] = psutil.Process().memory_info().rss / 2**20
        run["duration_s"] = run["ended"] - run.get("submitted", run["ended"])
        if result:
            run.update(
                {
                    k: result[k]
                    for k in (
                        "timings",
                        "node",
                        "node_id",
                        "pid",
                        "replicas",
                        "global_batch_size",
                        "worker_rss_mb",
                        "started",
                    )
                }
            )
        atomic_write_json(path, run)

    def _save_elapsed(self) -> None:
        atomic_write_json(self.job_dir.state_path, {"elapsed_s": self._elapsed()})

    def _count_finished(self) -> None:
        trials = self.oracle.trials.values()
        self.outcome.completed = sum(t.status == "COMPLETED" for t in trials)
        self.outcome.failed = sum(t.status == "FAILED" for t in trials)
        # get_best_trials pads with unfinished trials when too few completed: filter them.
        best = [t for t in self.oracle.get_best_trials(1) if t.status == "COMPLETED"]
        self.outcome.best = (best[0].trial_id, best[0].score) if best else None
        self._show_progress()

    def _show_progress(self) -> None:
        running = {
            trial.trial_id: read_json(self.job_dir.trial_dir(trial.trial_id) / "progress.json", {})
            for _, trial in self.running.values()
        }
        done = self.outcome.completed + self.outcome.failed
        self.progress.update(done, running, self.outcome.failed, self.outcome.best)

    def _print_trial(self, trial, result, error) -> None:
        values = {
            k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")
        }
        if trial.status != "COMPLETED":
            first = (error or trial.message or "objective is not a number").strip()
            first = first.splitlines()[0][:200]
            self.progress.trial_line(f"trial {trial.trial_id} [red]FAILED[/]: {first}")
            return
        objective = self.spec.tuner.objective.name
        fit = result["timings"].get("fit_s", 0.0)
        self.progress.trial_line(
            f"trial {trial.trial_id} [green]done[/] {objective}={trial.score:.4f} "
            f"fit {fit:.1f}s  {_compact(values)}"
        )


def _compact(values: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(values.items())
    )
