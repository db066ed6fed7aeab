"""Export of the best trials: SavedModel (TF Serving layout), .keras file and a manifest.

    export/<model_name>/<version>/saved_model.pb, variables/   what TF Serving loads
    export/<model_name>/<version>/model.keras                   for Keras users
    export/<model_name>/<version>/manifest.json                 trial, hyperparameters, metrics

Each version is written in a temporary folder and renamed into place, so a server watching
`<model_name>/` never sees a half-written version.
"""

from __future__ import annotations

import json
import platform
import shutil
import statistics
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console

from harness import __version__
from harness.errors import UserError
from harness.job import resume_spec
from harness.jobdir import JobDir, atomic_write_json, atomic_write_text, ranked_trials
from pipelines.base import content_digest, without_autotune_thread


def best_trials(job_dir: JobDir, top: int, console: Console | None = None) -> list[dict[str, Any]]:
    """Completed trials with a checkpoint, best first by the job's objective. A scored trial
    without one (its file deleted since) is passed over, said on `console`: what is exported
    is then not the best trial, and the user must hear it."""
    spec = resume_spec(job_dir)
    ranked = ranked_trials(job_dir.trial_records(), spec.tuner.objective.direction)
    kept = []
    for trial in ranked:
        if len(kept) == top:
            break
        path = job_dir.checkpoint_path(trial["trial_id"])
        if path.exists():
            kept.append(trial)
        elif console is not None:
            console.print(
                f"[yellow]warning:[/] trial {trial['trial_id']} ranks above the export "
                f"({spec.tuner.objective.name}={trial['score']:.4f}) but its checkpoint {path} "
                "is missing: passed over"
            )
    return kept


def export_trials(
    job_dir: JobDir, top: int, console: Console, reuse: bool = False
) -> list[dict[str, Any]]:
    """Exports the `top` best trials; returns their manifests. With `reuse` (the end of a
    `tune`/`resume`), a trial whose latest version under its name is already its export under
    the same export settings is not exported again: a resumed finished job neither refits
    nor adds a version."""
    trials = best_trials(job_dir, top, console)
    if not trials:
        raise UserError(f"{job_dir.root}: no completed trial with a checkpoint to export")
    spec = resume_spec(job_dir)
    base_name = spec.export.model_name or spec.name
    manifests = []
    for rank, trial in enumerate(trials, start=1):
        name = base_name if rank == 1 else f"{base_name}_top{rank}"
        earlier = exported_already(job_dir, spec, trial, name) if reuse else None
        if earlier:
            console.print(
                f"[bold]export[/] trial {trial['trial_id']} (rank {rank}) as {name}: "
                f"already exported, version {earlier['version']}"
            )
            manifests.append(earlier)
        else:
            console.print(f"[bold]export[/] trial {trial['trial_id']} (rank {rank}) as {name}")
            manifests.append(export_trial(job_dir, spec, trial, name, rank, console))
        test = manifests[-1]["test_metrics"]
        shown = ", ".join(f"{k}={v:.4f}" for k, v in test.items())
        console.print(f"  test: {shown}  -> {manifests[-1]['path']}", soft_wrap=True)
    return manifests


def exported_already(job_dir: JobDir, spec, trial: dict[str, Any], name: str) -> dict | None:
    """The manifest (with its `path`) of `name`'s latest version if that is `trial` exported
    with the job's current export settings, from the weights its checkpoint holds now and at
    the score it has now; None otherwise. A trial keeps its id when it trains on (a paused
    trial continued by a resume with a longer budget): then its export is stale."""
    model_dir = job_dir.export_dir / name
    version = _next_version(model_dir) - 1
    try:
        manifest = json.loads((model_dir / str(version) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    same = (
        manifest.get("trial_id") == trial["trial_id"]
        and manifest.get("export") == spec.export.model_dump(mode="json")
        and (manifest.get("objective") or {}).get("value") == trial.get("score")
        and manifest.get("checkpoint_sha256") not in (None, "missing")
        and manifest["checkpoint_sha256"]
        == content_digest(job_dir.checkpoint_path(trial["trial_id"]))
    )
    return {**manifest, "path": str(model_dir / str(version))} if same else None


def export_trial(
    job_dir: JobDir, spec, trial: dict[str, Any], name: str, rank: int, console: Console
) -> dict:
    import keras
    import keras_tuner as kt

    from harness.space import make_hypermodel
    from pipelines import PIPELINES

    pipeline = PIPELINES.get(spec.data.pipeline)(spec.data)
    hp = kt.HyperParameters.from_config(trial["hyperparameters"])
    meta = pipeline.describe(hp)
    keras.backend.clear_session()
    hypermodel = make_hypermodel(spec, meta)
    checkpoint = job_dir.checkpoint_path(trial["trial_id"])
    refit = None
    if spec.export.retrain:
        model, refit = _retrain(spec, pipeline, hypermodel, hp, trial, console)
    else:
        model = hypermodel.build(hp)
        # Built before the weights load, the optimizer takes its slots from the checkpoint too:
        # unbuilt, it was saved so in model.keras, and plain Keras warned on every load
        # ("Skipping variable loading for optimizer").
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and not getattr(optimizer, "built", True):
            optimizer.build(model.trainable_variables)
        with warnings.catch_warnings():  # a phased model's slots may not match: not needed
            warnings.simplefilter("ignore")
            try:
                model.load_weights(str(checkpoint))
            except (OSError, ValueError) as e:  # h5py's "truncated file", a foreign file
                reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
                raise UserError(
                    f"trial {trial['trial_id']}'s checkpoint {checkpoint} cannot be read "
                    f"({reason}); the file is damaged: restore it, or move it away to export the "
                    "next trial"
                ) from None
    test = without_autotune_thread(pipeline.test_data(hp=hp))
    test_metrics = model.evaluate(test, return_dict=True, verbose=0)
    shipped, serving = hypermodel.serving(model, pipeline, hp)
    if rank == 1 and meta.class_names and shipped is model:
        _confusion(job_dir, pipeline, model, hp, meta, trial["trial_id"])  # not for a GAN

    model_dir = job_dir.export_dir / name
    version = _next_version(model_dir)
    tmp = model_dir / f".tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        manifest = _manifest(spec, trial, meta, test_metrics, rank, name, version, serving)
        # The weights the export came from (or, refit, the trial whose length it took).
        manifest["checkpoint_sha256"] = content_digest(checkpoint)
        served = pipeline.served_test_metrics(serving, hp)
        if served:  # what a caller of the signature gets, e.g. a forecaster's raw units
            manifest["served_test_metrics"] = served
        if refit:
            manifest["refit"] = refit
        _write_formats(shipped, serving, tmp, spec.export.formats)
        _write_companions(tmp, manifest, pipeline, meta, serving, shipped is model)
        atomic_write_json(tmp / "manifest.json", manifest)
        final = model_dir / str(version)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest["path"] = str(final)
    return manifest


def _retrain(spec, pipeline, hypermodel, hp, trial, console: Console):
    """Refits the chosen configuration on train + validation from fresh weights: rebuilt by its
    hypermodel and trained by the space's own `fit` (phased transfer training, a GAN's steps),
    for `export.retrain_epochs` (the full schedule) or else as many epochs as its best epoch.
    With `export.retrain_time_budget_s`, fewer epochs when those would not fit the budget
    (a whole, shorter schedule, sized by timing the model's own steps first), and no epoch
    starts that would end past it. Selection stayed on validation; the test split is scored
    once, after this. Returns the model and the manifest's `refit` record."""
    import keras

    started = time.monotonic()
    data = pipeline.train_and_validation_data(hp)
    epochs = _refit_epochs(spec, trial)
    record: dict[str, Any] = {"data": "train+validation", "epochs": epochs}
    budget = spec.export.retrain_time_budget_s
    if budget:
        timing = _time_steps(spec, hypermodel, hp, data, epochs)
        record.update(timing)
        record["time_budget_s"] = budget
        left = budget - (time.monotonic() - started) - timing["first_epoch_extra_s"]
        # 3% to spare: a full epoch's steps vary more than the timed ones.
        fitting = max(1, int(0.97 * left // (timing["step_s"] * data.steps_per_epoch)))
        if fitting < epochs:
            console.print(
                f"  refit: {epochs} epochs would not fit {budget} s "
                f"({timing['step_s'] * 1000:.0f} ms a step): {fitting} epochs instead",
                highlight=False,
            )
            record["epochs_wanted"], epochs = epochs, fitting
            record["epochs"] = epochs
    keras.utils.set_random_seed(spec.tuner.seed)
    hypermodel.set_training_plan(epochs, data.steps_per_epoch)
    model = hypermodel.build(hp)
    console.print(
        f"  refit on train + validation: {epochs} epochs of {data.steps_per_epoch} steps",
        highlight=False,
    )
    callbacks = [_epoch_lines(console, epochs)]
    if budget:
        callbacks.append(_stop_before(started + budget, epochs, record, console))
    _fit(hypermodel, hp, model, data.train, data.steps_per_epoch, epochs, callbacks)
    record["duration_s"] = round(time.monotonic() - started, 1)
    return model, record


def _time_steps(spec, hypermodel, hp, data, epochs: int, steps: int = 20) -> dict[str, float]:
    """Times the chosen model's training steps on the refit's data, before the refit: three
    short epochs of a throwaway build; the mean of the last two gives the time a step,
    the first one's excess the one-off cost (tracing, the first reads) the refit pays again."""
    import keras

    steps = min(steps, data.steps_per_epoch)
    keras.utils.set_random_seed(spec.tuner.seed)
    hypermodel.set_training_plan(epochs, data.steps_per_epoch)
    model = hypermodel.build(hp)
    began: list[float] = []
    epoch_s: list[float] = []  # each epoch begin to end: a phased fit's gap between fits is not
    clock = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: began.append(time.monotonic()),
        on_epoch_end=lambda epoch, logs: epoch_s.append(time.monotonic() - began[-1]),
    )
    started = time.monotonic()
    _fit(hypermodel, hp, model, data.train, steps, 3, [clock])
    del model
    keras.backend.clear_session()
    step_s = statistics.mean(epoch_s[1:] or epoch_s) / steps
    return {
        "step_s": round(step_s, 5),
        "first_epoch_extra_s": round(max(0.0, epoch_s[0] - step_s * steps), 2),
        "timing_s": round(time.monotonic() - started, 1),
    }


def _fit(hypermodel, hp, model, train, steps_per_epoch: int, epochs: int, callbacks: list):
    """The space's own `fit` (phased transfer training, a GAN's steps), silent."""
    with warnings.catch_warnings():
        # Keras warns that `shuffle` is ignored for a tf.data input: the pipeline shuffles.
        warnings.filterwarnings("ignore", message=".*shuffle=True.*")
        hypermodel.fit(
            hp,
            model,
            train,
            steps_per_epoch=steps_per_epoch,
            epochs=epochs,
            callbacks=callbacks,
            verbose=0,
        )


def _stop_before(deadline: float, epochs: int, record: dict[str, Any], console: Console):
    """A Keras callback ending the fit of `epochs` after an epoch when the next one, as long as
    the median epoch so far (the first, with its tracing, only while alone), would end past
    `deadline` (a monotonic time); noted in `record`. A cut schedule loses its tail, where a
    cosine or one-cycle rate has little left to give. A space whose `fit` trains in phases
    (transfer learning: one `model.fit` each) goes on to its next phase after a callback
    stops one; that phase is stopped too, after its first step."""
    import keras

    class StopBefore(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch_s: list[float] = []
            self.stopped = False

        def on_train_begin(self, logs=None):
            self.model.stop_training = self.stopped

        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            if self.stopped:
                self.model.stop_training = True
                return
            now = time.monotonic()
            self.epoch_s.append(now - self.began)
            typical = statistics.median(self.epoch_s[1:] or self.epoch_s)
            if now + typical > deadline and epoch + 1 < epochs:
                self.model.stop_training = self.stopped = True
                record["stopped_after_epoch"] = epoch + 1
                console.print(
                    f"  refit: stopped after epoch {epoch + 1}/{epochs}: the next would end "
                    f"past its time budget ({record['time_budget_s']} s)",
                    highlight=False,
                )

    return StopBefore()


def _refit_epochs(spec, trial: dict[str, Any]) -> int:
    return spec.export.retrain_epochs or int(trial.get("best_step") or 0) + 1


def _epoch_lines(console: Console, epochs: int):
    """A Keras callback printing one line per refit epoch (long work shows progress)."""
    import keras

    class EpochLines(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.started = time.time()

        def on_epoch_end(self, epoch, logs=None):
            elapsed = time.time() - self.started
            eta = elapsed / (epoch + 1) * (epochs - epoch - 1)
            shown = " ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items())
            console.print(
                f"  refit epoch {epoch + 1}/{epochs} {shown} ({elapsed:.0f}s, eta {eta:.0f}s)",
                highlight=False,
            )

    return EpochLines()


def _confusion(job_dir: JobDir, pipeline, model, hp, meta, trial_id: str) -> None:
    """Confusion matrix of the best trial on the test split, as a TensorBoard image."""
    import numpy as np
    from sklearn.metrics import confusion_matrix

    from harness.summaries import write_confusion

    labels, preds = [], []
    for x, y in without_autotune_thread(pipeline.test_data(hp=hp)):
        preds.append(np.argmax(model.predict_on_batch(x), axis=-1))
        labels.append(np.asarray(y))
    classes = range(meta.num_classes)  # every class a row and a column, even if never seen
    matrix = confusion_matrix(np.concatenate(labels), np.concatenate(preds), labels=classes)
    write_confusion(job_dir.trial_board(trial_id) / "confusion", matrix, meta.class_names)


def _write_companions(
    target: Path, manifest: dict[str, Any], pipeline, meta, serving, trained_model: bool
) -> None:
    """What a deployment engineer needs beside the model: `labels.txt` (class index -> name,
    one per line), `example_request.json` (a TF Serving REST request with real test inputs)
    and `README.md`, a model card from the manifest. When what ships is not the trained
    classifier (a GAN's generator), the data's labels and inputs do not describe it."""
    classifier = trained_model and bool(meta.class_names)
    if classifier:
        atomic_write_text(target / "labels.txt", "\n".join(meta.class_names) + "\n")
    examples = pipeline.example_inputs(2) if trained_model else None
    if examples is not None:
        atomic_write_json(target / "example_request.json", _request(examples, serving))
    atomic_write_text(target / "README.md", model_card(manifest, examples is not None, classifier))


def _request(examples: list[Any], serving) -> dict[str, Any]:
    """A TF Serving REST body. One input: the row form (`instances`). Several (a generator's
    prompt, length, temperature): the columnar form (`inputs`), which keeps scalars scalar."""
    if not serving.extra_specs:
        return {"signature_name": "serving_default", "instances": examples}
    first = serving.input_spec.name
    inputs = {first: [e[first] for e in examples]}
    inputs.update({s.name: examples[0][s.name] for s in serving.extra_specs})
    return {"signature_name": "serving_default", "inputs": inputs}


def refit_line(refit: dict[str, Any]) -> str:
    """The model card's sentence on the refit, with how its time budget shaped it."""
    length = f"{refit['epochs']} epochs"
    if refit.get("epochs_wanted"):
        length += f" ({refit['epochs_wanted']} would not fit {refit['time_budget_s']} s)"
    if refit.get("stopped_after_epoch"):
        length += f", stopped after epoch {refit['stopped_after_epoch']} at its time budget"
    return f"Refit on {refit['data']} for {length} before export (selection stayed on validation)."


def model_card(manifest: dict[str, Any], has_example: bool, classifier: bool) -> str:
    """A short model card: what the model is, how it was chosen and scored, how to call it."""
    serving = manifest["serving"]
    objective = manifest["objective"]
    lines = [
        f"# {manifest['model_name']} (version {manifest['version']})",
        "",
        f"Job `{manifest['job']}`, trial {manifest['trial_id']} (rank {manifest['rank']} by "
        f"{objective['name']}, {objective['direction']}imised on the validation split: "
        f"{objective['value']:.4f}).",
    ]
    if manifest.get("refit"):
        lines.append(refit_line(manifest["refit"]))
    data = manifest["data"]
    tests = ", ".join(f"{k} {v:.4f}" for k, v in manifest["test_metrics"].items())
    lines += [
        "",
        f"**Test metrics** on {_scored(data)} of the test split of "
        f"`{data['dataset'] or data['pipeline']}` (scored once, at export): {tests}.",
        *(
            [
                "Through the serving signature, in the units it returns (the metrics above are "
                "the model's own, before the signature maps its outputs): "
                + ", ".join(f"{k} {v:.4f}" for k, v in manifest["served_test_metrics"].items())
                + "."
            ]
            if manifest.get("served_test_metrics")
            else []
        ),
        *(
            f"Baseline on the same examples, {name}: "
            + ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
            + "."
            for name, scores in manifest.get("test_baselines", {}).items()
        ),
        "",
        "## Serving",
        "",
        f"Signature `{serving['signature']}`: input `{serving['input']}`, "
        f"{serving['input_dtype']}, shape {serving['input_shape']} (raw inputs: the model "
        "does its own preprocessing).",
    ]
    if classifier:
        lines.append("Output `probabilities`: one per class, in the order of `labels.txt`.")
    lines += [
        "",
        "```python",
        "import tensorflow as tf",
        'serve = tf.saved_model.load("PATH/TO/THIS/FOLDER").signatures["serving_default"]',
        "```",
    ]
    if has_example:
        lines += [
            "",
            "TF Serving (REST), with the example request written beside this file:",
            "",
            "```bash",
            "curl -d @example_request.json "
            f"http://localhost:8501/v1/models/{manifest['model_name']}:predict",
            "```",
        ]
    lines += ["", "## Hyperparameters", "", "| name | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in manifest["hyperparameters"].items()]
    return "\n".join(lines) + "\n"


def _scored(data: dict[str, Any]) -> str:
    if data.get("test_examples"):
        return (
            f"the first {data['num_test']} examples (data.test_examples, in the stored order of "
            "the data; score the whole split to compare with others)"
        )
    return f"all {data['num_test']} examples"


def _next_version(model_dir: Path) -> int:
    versions = [int(p.name) for p in model_dir.glob("*") if p.name.isdigit()]
    return max(versions, default=0) + 1


def _write_formats(model, serving, target: Path, formats: list[str]) -> None:
    if "keras" in formats:
        model.save(str(target / "model.keras"))
    if "saved_model" in formats or "tflite" in formats:
        _write_saved_model(model, serving, target)
    if "tflite" in formats:
        import tensorflow as tf

        converter = tf.lite.TFLiteConverter.from_saved_model(str(target))
        (target / "model.tflite").write_bytes(converter.convert())
    if "saved_model" not in formats and "tflite" in formats:
        for item in ("saved_model.pb", "variables", "assets", "fingerprint.pb"):
            path = target / item
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def _write_saved_model(model, serving, target: Path) -> None:
    """A SavedModel whose `serving_default` takes raw inputs (uint8 images, review strings)."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    for extra in serving.tracked:
        archive.track(extra)
    archive.add_endpoint(name="serve", fn=serving.fn, input_signature=serving.input_specs)
    archive.write_out(str(target), verbose=False)


def _manifest(spec, trial, meta, test_metrics, rank, name, version, serving) -> dict:
    import keras
    import keras_tuner as kt
    import tensorflow as tf

    values = trial["hyperparameters"]["values"]
    best_step = trial.get("best_step")
    return {
        "job": spec.name,
        "model_name": name,
        "version": version,
        "rank": rank,
        "trial_id": trial["trial_id"],
        "hyperparameters": {k: v for k, v in values.items() if not k.startswith("tuner/")},
        "objective": {**spec.tuner.objective.model_dump(), "value": trial["score"]},
        "export": spec.export.model_dump(mode="json"),  # the settings it was exported with
        "best_epoch": best_step + 1 if best_step is not None else None,
        # At the best epoch (the exported or refit trial's weights), split by data.
        "validation_metrics": _metrics_at(trial, best_step, validation=True),
        "training_metrics": _metrics_at(trial, best_step, validation=False),
        "test_metrics": {k: float(v) for k, v in test_metrics.items()},
        "test_baselines": meta.baselines,  # trivial models' scores on the same test split
        "data": {
            "pipeline": spec.data.pipeline,
            "dataset": getattr(spec.data, "dataset", None),
            "fingerprint": meta.fingerprint,
            "num_test": meta.num_test,
            # None: the whole test split was scored; a number: only its first examples (in
            # the stored order of the data, which may not be the source file's).
            "test_examples": getattr(spec.data, "test_examples", None),
            "class_names": meta.class_names,
            # A forecaster's input: its window of these columns, raw units (predict reads it).
            **{
                k: meta.extra[k]
                for k in ("columns", "targets", "window", "horizon")
                if k in meta.extra
            },
        },
        "serving": {
            "signature": "serving_default",
            "input": serving.input_spec.name,
            "input_dtype": serving.input_spec.dtype.name,
            "input_shape": serving.input_spec.shape.as_list(),
            "inputs": [
                {"name": s.name, "dtype": s.dtype.name, "shape": s.shape.as_list()}
                for s in serving.input_specs
            ],
        },
        "versions": {
            "harness": __version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "keras_tuner": kt.__version__,
            "python": platform.python_version(),
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _metrics_at(trial: dict[str, Any], step, validation: bool) -> dict[str, float]:
    """The validation (`val_*`) or training metrics' values at the trial's best step."""
    out = {}
    for name, tracker in trial.get("metrics", {}).get("metrics", {}).items():
        if name.startswith("val_") != validation:
            continue
        for obs in tracker.get("observations", []):
            if obs["step"] == step:
                out[name] = float(obs["value"][0])
    return out
