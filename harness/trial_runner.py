"""One trial, inside a Ray worker process: data, strategy, model, fit, checkpoint, report.

The driver sends a plain-dict `request` and gets a plain-dict result back, so nothing
TensorFlow-specific crosses the process boundary.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import shutil
import socket
import time
import zlib
from typing import Any

import numpy as np
import psutil

from harness.jobdir import JobDir
from harness.lean_imports import import_keras_without_extras
from harness.pruning import restart_steps, rung_step


def run_trial(request: dict[str, Any]) -> dict[str, Any]:
    """Trains one trial and returns its per-epoch metrics and fixed-cost timings."""
    started = time.time()
    timings = {"queued_s": started - request["submitted_at"]}
    t = time.perf_counter()
    import_keras_without_extras()  # timed: the import is part of a trial's fixed cost
    import keras
    import keras_tuner as kt

    from harness.callbacks import EpochRecorder
    from harness.job import validate_job
    from harness.space import make_hypermodel
    from harness.strategy import configure_devices, make_strategy

    timings["import_s"] = time.perf_counter() - t
    spec = validate_job(request["job"], source="job.json", cross_check=False)
    job_dir = JobDir(request["job_dir"])
    trial_id = request["trial_id"]
    where = _record_attempt(job_dir, trial_id)
    # A paused trial continued by ASHA's promotion: {"epochs_done": its rung, "best": score}.
    resume = request.get("continue_from")
    if not resume:  # a continuation adds to the curves its earlier runs drew
        _clear_earlier_attempt(job_dir, trial_id)
    hp = kt.HyperParameters.from_config(request["hyperparameters"])

    t = time.perf_counter()
    configure_devices(spec.resources)
    strategy = make_strategy(spec.resources)
    _release()  # what earlier trials of this warm worker left, even if they failed
    _tensorflow_peak_mb(reset=True)
    # Before the datasets are made: a shuffle's seed pairs its own with the global one, which an
    # earlier trial of this warm worker would otherwise have left. Seeds weights, dropout and
    # data order, so a rerun is exact with data.deterministic, whatever ran before in the process.
    seed = trial_seed(spec.tuner.seed, trial_id)
    keras.utils.set_random_seed(seed)
    pipeline = _pipeline(spec.data)
    meta = pipeline.describe(hp)
    data = pipeline.train_data(hp, replicas=strategy.num_replicas_in_sync)
    hypermodel = make_hypermodel(spec, meta)
    epochs, initial_epoch = _epochs(spec, hp)
    initial_step = 0
    if resume:  # from the rung's epoch, and step when the rung falls inside that epoch
        initial_epoch, initial_step = rung_step(resume["epochs_done"], data.steps_per_epoch)
    # Schedules span the job's full epochs; a Hyperband round continuing a checkpoint from
    # `initial_epoch` (or a paused trial, from its rung) takes them up where its weights left off;
    # with `anneal_at_rungs` they start over at each rung.
    hypermodel.set_training_plan(
        spec.tuner.epochs,
        data.steps_per_epoch,
        initial_epoch,
        initial_step,
        restart_steps(spec.tuner.pruning, spec.tuner.epochs, data.steps_per_epoch),
    )
    with strategy.scope():
        model = hypermodel.build(hp)
        warm_start_from = _warm_start(model, hp, job_dir)
        if resume:
            model.load_weights(str(job_dir.paused_path(trial_id, resume["epochs_done"])))
    timings["build_s"] = time.perf_counter() - t

    asked = pipeline.shows_examples and request.get("examples", True)
    examples = _examples(job_dir, hp, pipeline, data, meta) if asked else None
    pause_to = None
    if spec.tuner.pruning.promotion:  # a stop is a pause: keep the weights to continue from

        def pause_to(epochs_done):
            return job_dir.paused_path(trial_id, epochs_done)

    recorder = EpochRecorder(job_dir, trial_id, epochs, request.get("channel"), pause_to)
    callbacks = _callbacks(
        spec, job_dir, trial_id, recorder, hypermodel, data, resume, (initial_epoch, initial_step)
    )
    fit = functools.partial(
        hypermodel.fit,  # Keras Tuner's hook for spaces that train in phases (transfer learning)
        hp,
        model,
        validation_data=data.validation,
        callbacks=callbacks,
        verbose=2 if spec.training.verbose else 0,
    )
    t = time.perf_counter()
    if initial_step:
        # Paused inside an epoch: first that epoch's remaining steps, on the batches that
        # follow the ones it trained on (exact in epoch 1), as a shorter epoch of its own.
        fit(
            data.train.skip(initial_step),
            steps_per_epoch=data.steps_per_epoch - initial_step,
            epochs=initial_epoch + 1,
            initial_epoch=initial_epoch,
        )
        initial_epoch += 1
    if initial_epoch < epochs and not (recorder.pruned or model.stop_training):
        fit(
            data.train,
            steps_per_epoch=data.steps_per_epoch,
            epochs=epochs,
            initial_epoch=initial_epoch,
        )
    timings["fit_s"] = time.perf_counter() - t
    timings.update(recorder.timings())
    return {
        "trial_id": trial_id,
        "epochs": recorder.history,
        "pruned": recorder.pruned,
        "checks": recorder.checks,
        "warm_start_from": warm_start_from,
        "examples": examples,
        "hyperparameters": hp.get_config(),
        "seed": seed,
        "timings": timings,
        **where,
        "replicas": strategy.num_replicas_in_sync,
        "global_batch_size": data.batch_size,
        "worker_rss_mb": psutil.Process().memory_info().rss / 2**20,  # memory across trials
        "tensorflow_peak_mb": _tensorflow_peak_mb(),  # this trial's tensors at their peak
        "started": started,
        "ended": time.time(),
    }


def _tensorflow_peak_mb(reset: bool = False) -> float | None:
    """The most memory TensorFlow's CPU allocator held at once since the last reset, in MB;
    None where that allocator keeps no count (a user turned `TF_CPU_ALLOCATOR_USE_BFC` off:
    harness.tf_env)."""
    import tensorflow as tf

    try:
        if reset:
            tf.config.experimental.reset_memory_stats("CPU:0")
            return None
        return tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2**20
    except (ValueError, RuntimeError):  # "Allocator stats not available": malloc, the default
        return None


def warm_up(resources: dict[str, Any], job: dict[str, Any] | None = None) -> None:
    """A new worker's start, before its first trial: imports, device set-up (threads, GPU
    memory growth, logical CPUs), the data of `job` (its worker form) read, and what that
    made frozen out of garbage collection."""
    import_keras_without_extras()
    import harness.callbacks  # noqa: F401
    import harness.space  # noqa: F401
    import pipelines  # noqa: F401
    from harness.job import ResourcesSpec
    from harness.strategy import configure_devices

    configure_devices(ResourcesSpec.model_validate(resources))
    if job is not None:
        _prepare_data(job)
    _release()  # collects, then freezes what the imports and the data made


def _prepare_data(job: dict[str, Any]) -> None:
    """Reads and prepares the job's data for its default point in the pipeline a trial takes
    from `_pipeline`, so that the first trial does not pay for it. A failure is left to that
    trial: it makes the same calls, and reports the error as its own."""
    import keras_tuner as kt

    from harness.job import validate_job

    try:
        pipeline = _pipeline(validate_job(job, source="job.json", cross_check=False).data)
        hp = kt.HyperParameters()
        pipeline.declare_hyperparameters(hp)
        pipeline.train_data(hp)
    except Exception:  # noqa: BLE001, S110 - the trial raises and reports it
        pass


def trial_seed(job_seed: int, trial_id: str) -> int:
    """The trial's random seed: fixed by the job's `tuner.seed` and the trial id, so a rerun or
    a resumed trial starts from the same weights, and two trials never share a seed."""
    return zlib.crc32(f"{job_seed}/{trial_id}".encode()) % 2**31


def _pipeline(config):
    """The pipeline for the data options `config`, kept for the worker's later trials: one with
    the same options (and data directory) reuses its prepared examples (decoded, resized,
    cached) instead of reading and decoding them again."""
    from pipelines import PIPELINES
    from pipelines.tfds_source import resolve_data_dir

    key = (config.fingerprint(), str(resolve_data_dir(getattr(config, "data_dir", None))))
    if key not in _PIPELINES:
        if _PIPELINES:
            gc.unfreeze()  # the data dropped here was frozen as long-lived (see `_release`)
        _PIPELINES.clear()  # a worker serves one job: keep only the latest data in memory
        _PIPELINES[key] = PIPELINES.get(config.pipeline)(config)
    return _PIPELINES[key]


_PIPELINES: dict[tuple[str, str], Any] = {}


def _release() -> None:
    """Frees what TensorFlow and Keras keep of finished trials, so a warm worker stays flat.

    Keras's optimizer sums gradients with `ReplicaContext.all_reduce`, whose graph-mode
    `tf.custom_gradient` registers a gradient function under a new name in TensorFlow's global
    gradient registry and never removes it (tensorflow/tensorflow#27492, #97697). Its closure
    holds the traced train step, so every trial's graphs stayed alive: +10 MB a trial for the
    tutorial CNN. An entry only serves the tracing of the function that made it, and no trial is
    tracing now.
    """
    import keras
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", {})
    for name in [n for n in registry if n.startswith("CustomGradient-")]:
        del registry[name]
    keras.backend.clear_session()  # Keras's global state; collects the freed graphs
    # What survives that full collection is long-lived (modules, compiled kernels, the prepared
    # data): frozen, later collections skip it, and each trial's collection scans only what the
    # trial made. A full collection over TensorFlow's millions of objects cost 0.2 s a trial.
    gc.freeze()


def _examples(job_dir: JobDir, hp, pipeline, data, meta) -> dict[str, Any] | None:
    """A few labelled training images, as the model sees them, for the job's `examples` run
    (one run per tuned `augment_strength`): sent with the result until the driver has drawn
    them (`harness.summaries.write_examples_once`), so that the drawing (matplotlib, a second
    in a new worker) is not part of any trial."""
    from harness.summaries import EXAMPLES_SHOWN, examples_drawn

    board = _examples_board(job_dir, hp.values.get("augment_strength"))
    if examples_drawn(board):
        return None
    images, labels, augmented = pipeline.example_batch(data, hp)
    return {
        "board": str(board),
        "images": np.asarray(images[:EXAMPLES_SHOWN]),
        "labels": np.asarray(labels[:EXAMPLES_SHOWN]),
        "augmented": augmented,
        "class_names": list(meta.class_names),
    }


def _examples_board(job_dir: JobDir, strength: float | None):
    board = job_dir.tensorboard_dir / "examples"
    return board if strength is None else board / f"augment_strength_{strength:g}"


def _record_attempt(job_dir: JobDir, trial_id: str) -> dict[str, Any]:
    """Appends this attempt (host, Ray node, pid) to `attempts.jsonl`: a worker killed mid-trial
    and retried by Ray leaves one line per attempt, and its pid is there to find."""
    import ray

    context = ray.get_runtime_context() if ray.is_initialized() else None
    where = {
        "node": socket.gethostname(),
        "node_id": context.get_node_id() if context else None,
        "pid": os.getpid(),
        # The GPUs Ray gave this worker: a warm worker must keep the same ones for life.
        "gpu_ids": context.get_accelerator_ids().get("GPU", []) if context else [],
    }
    path = job_dir.trial_dir(trial_id) / "attempts.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:  # one short O_APPEND write per attempt
        f.write(json.dumps({**where, "started": time.time()}) + "\n")
    where["attempts"] = len(path.read_text().splitlines())  # this trial's, over all its runs
    return where


def _clear_earlier_attempt(job_dir: JobDir, trial_id: str) -> None:
    """A retried attempt (Ray restarted a killed worker) draws the trial's curves afresh: the
    earlier attempt's train/validation runs go; the driver's HParams session stays."""
    board = job_dir.trial_board(trial_id)
    for part in ("train", "validation"):
        shutil.rmtree(board / part, ignore_errors=True)


def _epochs(spec, hp) -> tuple[int, int]:
    """Hyperband sets `tuner/epochs` and `tuner/initial_epoch`; other oracles train from 0."""
    values = hp.values
    return values.get("tuner/epochs", spec.tuner.epochs), values.get("tuner/initial_epoch", 0)


def _warm_start(model, hp, job_dir: JobDir) -> str | None:
    """Hyperband's later rounds continue from an earlier trial's best checkpoint (read from
    the shared job directory, whichever node wrote it); returns that trial's id."""
    parent = hp.values.get("tuner/trial_id")
    if parent:
        model.load_weights(str(job_dir.checkpoint_path(parent)))
    return parent


def _callbacks(
    spec, job_dir: JobDir, trial_id: str, recorder, hypermodel, data, resume, start
) -> list:
    import keras

    from harness.callbacks import AveragedRungs, BestCheckpoint, MidEpochCheck
    from harness.pruning import asha_rungs, mid_epoch_points

    callbacks = [
        keras.callbacks.TensorBoard(
            log_dir=str(job_dir.trial_board(trial_id)), write_graph=False, profile_batch=0
        ),
        # A continuation keeps its earlier best unless it beats it.
        BestCheckpoint(
            job_dir.checkpoint_path(trial_id),
            spec.tuner.objective,
            best=resume["best"] if resume else None,
        ),
        recorder,
    ]
    pruning = spec.tuner.pruning
    averaged = pruning.rule == "asha" and pruning.rung_averaging > 0
    if averaged:  # every rung, whole epochs too: ranked by the averaged weights
        points = asha_rungs(spec.tuner.epochs, pruning.grace_epochs, pruning.reduction_factor)
    else:
        points = mid_epoch_points(pruning, spec.tuner.epochs)
    if resume:  # the rungs it passed already are not checked again
        points = [p for p in points if p > resume["epochs_done"]]
    if points and data.validation is not None:
        if averaged:
            check = AveragedRungs(
                recorder,
                points,
                pruning.rung_averaging,
                data.steps_per_epoch,
                data.validation,
                start,
            )
        else:
            check = MidEpochCheck(recorder, points, data.steps_per_epoch, data.validation, start)
        callbacks.append(check)
    # Spaces may add their own (e.g. GAN sample grids), written beside the trial's scalars.
    callbacks.extend(hypermodel.extra_callbacks(str(job_dir.trial_board(trial_id))))
    stop = spec.training.early_stopping
    if stop:
        mode = stop.mode
        if mode == "auto" and stop.monitor == spec.tuner.objective.name:
            mode = spec.tuner.objective.direction
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=stop.monitor, patience=stop.patience, min_delta=stop.min_delta, mode=mode
            )
        )
    return callbacks
