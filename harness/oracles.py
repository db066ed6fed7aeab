"""Tuner algorithms: Keras Tuner oracles by name, persisted atomically in the job directory."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import keras_tuner as kt

from harness.job import TunerSpec
from harness.jobdir import ORACLE_PROJECT, JobDir, atomic_write_json


class AtomicStateMixin:
    """Keras Tuner writes oracle.json and trial.json in place; a driver killed mid-write would
    leave a file that cannot be reloaded. Write through a temporary file instead."""

    def save(self):
        atomic_write_json(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        path = os.path.join(self._get_trial_dir(trial.trial_id), "trial.json")
        atomic_write_json(path, trial.get_state())


class DefaultFirstMixin:
    """The first sampled point is the space's default (the tutorial model), so every search
    starts from the known baseline and explores outward. Hooks Keras Tuner's `_random_values`,
    which the random, Bayesian (initial points) and Hyperband oracles sample through."""

    start_from_default = True

    def _random_values(self):
        if self.start_from_default and not self.trials:
            hps = kt.HyperParameters()
            for hp in self.hyperparameters.space:
                hps.merge([hp])
                if hps.is_active(hp):
                    hps.values[hp.name] = hp.default
            return hps.values
        return super()._random_values()


@functools.cache
def _atomic(cls: type) -> type:
    return type(f"Harness{cls.__name__}", (AtomicStateMixin, DefaultFirstMixin, cls), {})


def _objective(spec: TunerSpec) -> kt.Objective:
    return kt.Objective(spec.objective.name, direction=spec.objective.direction)


def _common(spec: TunerSpec) -> dict:
    # The failure limit is the trial loop's (harness/tuning.py): Keras Tuner's raises from
    # inside end_trial, leaving the failed trial "ongoing" so a resume would re-run it.
    return dict(objective=_objective(spec), seed=spec.seed, max_consecutive_failed_trials=10**9)


def _random(spec: TunerSpec):
    return _atomic(kt.oracles.RandomSearchOracle)(max_trials=spec.max_trials, **_common(spec))


def _bayesian(spec: TunerSpec):
    return _atomic(kt.oracles.BayesianOptimizationOracle)(
        max_trials=spec.max_trials,
        num_initial_points=spec.bayesian_initial_points,
        **_common(spec),
    )


def _grid(spec: TunerSpec):
    return _atomic(kt.oracles.GridSearchOracle)(max_trials=spec.max_trials, **_common(spec))


def _hyperband(spec: TunerSpec):
    # Hyperband budgets by max_epochs/factor/iterations; max_trials caps it as for the others.
    oracle = _atomic(kt.oracles.HyperbandOracle)(
        max_epochs=spec.epochs,
        factor=spec.hyperband_factor,
        hyperband_iterations=spec.hyperband_iterations,
        **_common(spec),
    )
    oracle.max_trials = spec.max_trials  # the base Oracle enforces it in create_trial
    return oracle


ORACLES: dict[str, Callable[[TunerSpec], kt.Oracle]] = {
    "random": _random,
    "bayesian": _bayesian,
    "grid": _grid,
    "hyperband": _hyperband,
}


def make_oracle(spec: TunerSpec, job_dir: JobDir) -> kt.Oracle:
    """Creates the job's oracle; reloads its state when the job directory already has one."""
    oracle = ORACLES[spec.algorithm](spec)
    oracle.verbose = 0  # the driver shows its own progress
    oracle.start_from_default = spec.start_from_default
    oracle._set_project_dir(str(job_dir.root), ORACLE_PROJECT)
    if (job_dir.oracle_dir / "oracle.json").exists():
        oracle.reload()
    return oracle
