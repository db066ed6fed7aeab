"""TensorBoard's HParams dashboard for a job: the experiment's domains, one session per trial.

The driver writes the experiment (every tuned hyperparameter with its domain, and the metrics)
once in `tensorboard/`, and each trial's hyperparameter values in `tensorboard/<trial_id>/` when
the trial is submitted, so the dashboard lists every trial, failed ones included. The metric
values come from the per-epoch scalars Keras's TensorBoard callback writes in `train/` and
`validation/` of each trial's run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras_tuner as kt

from harness.job import JobSpec


def _domain(h) -> Any:
    from tensorboard.plugins.hparams import api as hp_api

    kind = type(h).__name__
    if kind == "Choice":
        return hp_api.Discrete(list(h.values))
    if kind == "Boolean":
        return hp_api.Discrete([False, True])
    if kind == "Int":
        return hp_api.IntInterval(int(h.min_value), int(h.max_value))
    if kind == "Float":
        return hp_api.RealInterval(float(h.min_value), float(h.max_value))
    return hp_api.Discrete([h.value])  # Fixed


def _metrics(spec: JobSpec, metric_names: list[str]) -> list:
    from tensorboard.plugins.hparams import api as hp_api

    out = []
    for name in ["loss", *metric_names]:
        for group, prefix in (("train", ""), ("validation", "val_")):
            out.append(hp_api.Metric(f"epoch_{name}", group=group, display_name=f"{prefix}{name}"))
    return out


def write_experiment(
    spec: JobSpec, space: kt.HyperParameters, log_dir: Path, metric_names: list[str]
) -> None:
    """The HParams experiment config: all hyperparameters with domains, and the metrics."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp_api

    hparams = [
        hp_api.HParam(h.name, _domain(h)) for h in space.space if not h.name.startswith("tuner/")
    ]
    with tf.summary.create_file_writer(str(log_dir)).as_default():
        hp_api.hparams_config(hparams=hparams, metrics=_metrics(spec, metric_names))


def write_trial(log_dir: Path, trial_id: str, values: dict[str, Any]) -> None:
    """One HParams session for a trial (written at submit time, so failures show too)."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hp_api

    values = {k: v for k, v in values.items() if not k.startswith("tuner/")}
    with tf.summary.create_file_writer(str(log_dir / trial_id)).as_default():
        hp_api.hparams(values, trial_id=trial_id)
