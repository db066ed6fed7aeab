"""Tuner algorithms: Keras Tuner oracles by name, persisted atomically in the job directory."""

from __future__ import annotations

import functools
import os
import re
import warnings
import zlib
from collections.abc import Callable
from typing import Any

import keras_tuner as kt

from harness.job import TunerSpec
from harness.jobdir import ORACLE_PROJECT, JobDir, atomic_write_json

# How the trial loop marks a trial that a pruning rule stopped (its oracle status stays
# COMPLETED, with its best score so far): "pruned after 0.25 epochs: <reason>".
PRUNED = "pruned after"
_PRUNED_AT = re.compile(rf"^{PRUNED} ([0-9.eE+-]+) epochs")


def pruned_epochs(trial) -> float | None:
    """The epochs a pruned (or paused) trial had trained when it stopped; None otherwise."""
    found = _PRUNED_AT.match(trial.message or "")
    return float(found.group(1)) if found else None


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


def oracle_seed(seed: int) -> int:
    """The seed a job's oracle starts from, for the job's `tuner.seed`.

    Keras Tuner's oracles step their seed once per value drawn (`_seed_state += 1`, each value
    from `random.Random(state)`), so the seeds themselves as starts made nearby seeds replay
    one sequence shifted: seeds 8 and 9 gave the same draws from a job's third trial on, and
    seeds 1000 apart would meet after 1,000 values. Hashed, each job seed starts at its own
    place in [1, 2**31), far from any other's. (Keras Tuner reads a seed of 0 as "random".)"""
    return zlib.crc32(f"harness.oracle/{seed}".encode()) % (2**31 - 1) + 1


def _common(spec: TunerSpec) -> dict:
    # The failure limit is the trial loop's (harness/tuning.py): Keras Tuner's raises from
    # inside end_trial, leaving the failed trial "ongoing" so a resume would re-run it.
    return dict(
        objective=_objective(spec),
        seed=oracle_seed(spec.seed),
        max_consecutive_failed_trials=10**9,
    )


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


class TPEOracle(kt.Oracle):
    """Tree-structured Parzen estimator (Optuna's `TPESampler`) as a Keras Tuner oracle.

    The first `initial_points` trials are Keras Tuner's own random draws (the default point
    first), so they match the random oracle's. Then every new trial is Optuna's proposal given
    all finished trials, which handles conditional hyperparameters (a learning rate per
    optimizer) and many choices with a few dozen results, where the Gaussian process of the
    Bayesian oracle cannot. Pruned and paused trials count as Optuna's PRUNED trials, ranked
    by how far they got and then by their score there (Optuna's multi-fidelity TPE, made to
    follow successive halving). Choices are categorical; numbers are sampled on Keras Tuner's
    own scale (`value_to_prob`), so log sampling and steps keep their meaning.

    Nothing extra is persisted: Optuna's study is rebuilt from the oracle's trials, so a
    resumed job proposes from the same history.
    """

    def __init__(self, initial_points: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.initial_points = initial_points or 10
        self._study = None
        self._in_study: dict[str, tuple] = {}  # trial id -> what the study holds for it

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        finished = [t for t in self.trials.values() if t.status in ("COMPLETED", "FAILED")]
        values = None
        if len([t for t in finished if t.status == "COMPLETED"]) >= self.initial_points:
            values = self._proposal()
        if values is None:
            values = self._random_values()
        if values is None:
            return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
        return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": values}

    def _proposal(self) -> dict[str, Any] | None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = self._synced_study(optuna)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # Seeded by the history's size: the same history gives the same proposal, resumed
            # or not (numpy's seeds are 32-bit).
            study.sampler = optuna.samplers.TPESampler(
                seed=zlib.crc32(f"{self.seed}/{len(self.trials)}".encode()),
                n_startup_trials=0,  # the random start is Keras Tuner's (above)
                multivariate=True,
                group=True,  # conditional hyperparameters form their own groups
            )
        for _ in range(self._max_collisions):
            asked = study.ask()
            hps = kt.HyperParameters()
            for hp in self.hyperparameters.space:
                hps.merge([hp])
                if hps.is_active(hp):
                    hps.values[hp.name] = self._suggest(asked, hp)
            study.tell(asked, state=optuna.trial.TrialState.FAIL)  # a draw, not a result
            if not self._duplicate(hps.values):
                return hps.values
        return None

    @staticmethod
    def _suggest(asked, hp) -> Any:
        if isinstance(hp, kt.engine.hyperparameters.Fixed):
            return hp.value
        if _is_categorical(hp):
            return asked.suggest_categorical(hp.name, _distribution(hp).choices)
        return hp.prob_to_value(asked.suggest_float(hp.name, 0.0, 1.0))

    def _synced_study(self, optuna):
        """The Optuna study holding every finished trial in the order the trials started (TPE
        weighs trials by their order; a reloaded oracle keeps `start_order`). Extended while
        the trials it holds stay the first ones and unchanged; rebuilt otherwise (a trial that
        finished out of order, a paused trial that continued)."""
        now = {
            trial_id: _as_optuna(self.trials[trial_id])
            for trial_id in self.start_order
            if self.trials[trial_id].status == "COMPLETED"
            and self.trials[trial_id].score is not None
        }
        if self._study is None or list(now.items())[: len(self._in_study)] != list(
            self._in_study.items()
        ):
            direction = "maximize" if self.objective.direction == "max" else "minimize"
            self._study = optuna.create_study(direction=direction)
            self._in_study = {}
        space = {hp.name: hp for hp in self.hyperparameters.space}
        for trial_id, held in now.items():
            if trial_id in self._in_study:
                continue
            state, score, step = held
            params, distributions = {}, {}
            for name, value in self.trials[trial_id].hyperparameters.values.items():
                hp = space.get(name)
                if hp is None or isinstance(hp, kt.engine.hyperparameters.Fixed):
                    continue  # Hyperband's tuner/* entries, fixed values
                distributions[name] = _distribution(hp)
                params[name] = value if _is_categorical(hp) else hp.value_to_prob(value)
            self._study.add_trial(
                optuna.trial.create_trial(
                    state=getattr(optuna.trial.TrialState, state),
                    value=score if state == "COMPLETE" else None,
                    params=params,
                    distributions=distributions,
                    intermediate_values={step: score} if state == "PRUNED" else None,
                )
            )
            self._in_study[trial_id] = held
        return self._study


def _is_categorical(hp) -> bool:
    return isinstance(hp, (kt.engine.hyperparameters.Choice, kt.engine.hyperparameters.Boolean))


def _distribution(hp):
    import optuna

    if isinstance(hp, kt.engine.hyperparameters.Boolean):
        return optuna.distributions.CategoricalDistribution([True, False])
    if isinstance(hp, kt.engine.hyperparameters.Choice):
        return optuna.distributions.CategoricalDistribution(list(hp.values))
    return optuna.distributions.FloatDistribution(0.0, 1.0)  # Keras Tuner's own scale


def _as_optuna(trial) -> tuple[str, float, int]:
    """(Optuna state, score, step) of a finished trial: a pruned one is PRUNED at the epochs it
    reached (in thousandths: Optuna's steps are integers)."""
    epochs = pruned_epochs(trial)
    if epochs is None:
        return "COMPLETE", float(trial.score), 0
    return "PRUNED", float(trial.score), round(epochs * 1000)


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


def _tpe(spec: TunerSpec):
    return _atomic(TPEOracle)(
        max_trials=spec.max_trials, initial_points=spec.bayesian_initial_points, **_common(spec)
    )


ORACLES: dict[str, Callable[[TunerSpec], kt.Oracle]] = {
    "random": _random,
    "bayesian": _bayesian,
    "tpe": _tpe,
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
