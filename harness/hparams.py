"""TensorBoard's HParams dashboard for a job: the experiment's domains, one session per trial.

The driver writes the experiment (every tuned hyperparameter with its domain, and the metrics)
once in `tensorboard/`, and each trial's hyperparameter values in `tensorboard/trial_<id>/` when
the trial is submitted, so the dashboard lists every trial, failed ones included. When a trial
ends the driver closes its session with its status (success, or failure: the Status filter
works) and writes, in the same run, the objective at the trial's best epoch (the value the
tuner ranks by, declared as the first metric) and a text card (status, reason, where a pruned
trial stopped, hyperparameters). The last-epoch values come from the per-epoch scalars Keras's
TensorBoard callback writes in `train/` and `validation/` of each trial's run.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import keras_tuner as kt

from harness.job import JobSpec

# Integer hyperparameters go to TensorBoard as text: its front end prints every number with five
# significant digits (64 reads "64.000"), text as it is. A domain lists at most this many values.
MAX_LISTED_INTEGERS = 100


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def shown(value: Any) -> Any:
    """A hyperparameter value as the dashboard gets it: integers as text, the rest as is."""
    return str(value) if _is_integer(value) else value


def _domain(h) -> Any:
    """The dashboard's domain of a Keras Tuner hyperparameter; integers as text values (None for
    a range too long to list: the dashboard then lists the values trials used)."""
    from tensorboard.plugins.hparams import api as hp_api

    kind = type(h).__name__
    if kind == "Int":
        values = [int(v) for v in itertools.islice(h.values, MAX_LISTED_INTEGERS + 1)]
        if len(values) > MAX_LISTED_INTEGERS:
            return None
        return hp_api.Discrete([str(v) for v in values])
    if kind == "Choice":
        values = list(h.values)
        if all(_is_integer(v) for v in values):
            return hp_api.Discrete([str(v) for v in values])
        return hp_api.Discrete(values)
    if kind == "Boolean":
        return hp_api.Discrete([False, True])
    if kind == "Float":
        return hp_api.RealInterval(float(h.min_value), float(h.max_value))
    return hp_api.Discrete([shown(h.value)])  # Fixed


def best_tag(spec: JobSpec) -> str:
    """The scalar tag of a trial's objective at its best epoch (the tuner's ranking value)."""
    return f"trial/best_{spec.tuner.objective.name}"


def _metrics(spec: JobSpec, metric_names: list[str]) -> list:
    from tensorboard.plugins.hparams import api as hp_api

    objective = spec.tuner.objective.name
    out = [
        hp_api.Metric(
            best_tag(spec),
            display_name=f"best {objective} (objective)",
            description="The objective at the trial's best epoch: how the tuner ranks trials.",
        ),
        hp_api.Metric("trial/epochs", display_name="epochs run"),
    ]
    for name in ["loss", *metric_names]:
        for group, prefix in (("train", ""), ("validation", "val_")):
            shown = f"{prefix}{name} (last epoch)"
            out.append(hp_api.Metric(f"epoch_{name}", group=group, display_name=shown))
    return out


def write_experiment(
    spec: JobSpec, space: kt.HyperParameters, log_dir: Path, metric_names: list[str]
) -> None:
    """The HParams experiment config: all hyperparameters with domains, and the metrics."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp_api

    # TensorBoard's HParams tab ticks only the first 5 hyperparameters at first (a fixed limit
    # of its front end): the ones a search varies come first, unconditional before those that
    # exist only in some branches; pinned ones last. The text card of each trial lists all.
    tuned = [h for h in space.space if not h.name.startswith("tuner/")]
    tuned.sort(key=lambda h: (type(h).__name__ == "Fixed", bool(h.conditions)))
    hparams = [hp_api.HParam(h.name, _domain(h)) for h in tuned]
    with tf.summary.create_file_writer(str(log_dir)).as_default():
        hp_api.hparams_config(hparams=hparams, metrics=_metrics(spec, metric_names))


def write_trial(board: Path, trial_id: str, values: dict[str, Any]) -> None:
    """Opens a trial's HParams session in its run `board` (at submit time, so failures show
    too)."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp_api

    values = {k: shown(v) for k, v in values.items() if not k.startswith("tuner/")}
    with tf.summary.create_file_writer(str(board)).as_default():
        hp_api.hparams(values, trial_id=f"trial_{trial_id}")


def end_trial(
    spec: JobSpec,
    board: Path,
    status: str,
    reason: str | None,
    best: tuple[float, int] | None,
    epochs: int,
    values: dict[str, Any],
) -> None:
    """Closes a trial's HParams session: its status (COMPLETED and PRUNED are successes with a
    score; FAILED is a failure), the objective at its best epoch as `(value, epoch)`, the
    epochs it ran, and a text card saying what happened."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api_pb2
    from tensorboard.plugins.hparams import summary as hp_summary

    ok = status != "FAILED"
    end = hp_summary.session_end_pb(api_pb2.STATUS_SUCCESS if ok else api_pb2.STATUS_FAILURE)
    objective = spec.tuner.objective.name
    lines = [f"**{status}**" + (f": {reason}" if reason else "")]
    if best is not None:
        lines.append(f"best {objective} {best[0]:.4f} at epoch {best[1] + 1}; {epochs} epochs run")
    lines += ["", "| hyperparameter | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in values.items() if not k.startswith("tuner/")]
    with tf.summary.create_file_writer(str(board)).as_default():
        tf.summary.experimental.write_raw_pb(end.SerializeToString(), step=0)
        if best is not None:
            tf.summary.scalar(best_tag(spec), best[0], step=best[1])
        tf.summary.scalar("trial/epochs", epochs, step=0)
        tf.summary.text("trial/summary", "\n".join(lines), step=0)
