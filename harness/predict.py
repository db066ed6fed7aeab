"""`harness predict`: load an exported SavedModel and run its serving signature on raw inputs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.jobdir import read_json

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


def resolve_version(path: Path) -> Path:
    """A version folder, or the newest version of a model folder (as TF Serving picks)."""
    if (path / "saved_model.pb").exists():
        return path
    versions = sorted((p for p in path.glob("*") if p.name.isdigit()), key=lambda p: int(p.name))
    if not versions or not (versions[-1] / "saved_model.pb").exists():
        raise UserError(f"{path} holds no exported SavedModel (expected <model>/<version>/)")
    return versions[-1]


def predict(
    export_dir: Path,
    inputs: list[str],
    length: int | None = None,
    temperature: float | None = None,
    top: int | None = None,
) -> list[dict[str, Any]]:
    """Runs `serving_default` on image files, text lines or (sequence classifiers) `.npy` /
    `.csv` files of sequences: the `top` classes per input (1 unless given); or a forecaster on
    CSV files (the forecast per target), a language model on prompts (`length` characters, 200
    unless given, at `temperature`, 0.8), a seq2seq model on strings. An option the model has
    no use for is refused, naming what the model is."""
    import numpy as np
    import tensorflow as tf

    version = resolve_version(export_dir)
    manifest = read_json(version / "manifest.json", {})
    serving = manifest.get("serving", {})
    generator = any(i["name"] == "length" for i in serving.get("inputs", []))
    if not generator:
        _refuse_unused(
            {"--length": length, "--temperature": temperature},
            version,
            "not a language model",
            "language models",
        )
    if "window" in manifest.get("data", {}):
        _refuse_unused({"--top": top}, version, "a forecaster", "classifiers")
        return _forecast(tf, version, manifest, inputs)
    if generator:
        _refuse_unused({"--top": top}, version, "a language model", "classifiers")
        length = 200 if length is None else length
        return _generate(tf, version, inputs, length, 0.8 if temperature is None else temperature)
    batch, labels = _load_inputs(tf, inputs, serving)
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    outputs = signature(**{serving.get("input", "inputs"): batch})
    if "decoded" in outputs:  # a sequence-to-sequence model: strings in, strings out
        _refuse_unused({"--top": top}, version, "a sequence-to-sequence model", "classifiers")
        decoded = [d.decode("utf-8", "replace") for d in outputs["decoded"].numpy()]
        return [{"input": i, "decoded": d} for i, d in zip(labels, decoded, strict=True)]
    top = 1 if top is None else top
    probs = np.asarray(next(iter(outputs.values())))
    names = manifest.get("data", {}).get("class_names") or []
    rows = []
    for source, p in zip(labels, probs, strict=True):
        best = [int(i) for i in np.argsort(-p, kind="stable")[:top]]
        ranked = [
            {"class": names[i] if i < len(names) else i, "probability": float(p[i])} for i in best
        ]
        rows.append({"input": source, **ranked[0], "top": ranked})
    return rows


def _refuse_unused(options: dict[str, Any], version: Path, kind: str, users: str) -> None:
    """One line for an option given to a model that has no use for it (a classifier's `--top`
    to a forecaster, a language model's `--length` to a classifier)."""
    given = [name for name, value in options.items() if value is not None]
    if given:
        raise UserError(f"{given[0]}: {version} is {kind}; {given[0]} is for {users}")


def _forecast(tf, version: Path, manifest: dict[str, Any], inputs: list[str]) -> list[dict]:
    """A forecaster on CSV files: each file's last `window` rows of the model's columns (raw
    units) in, the next `horizon` values of each target out."""
    import numpy as np

    data = manifest["data"]
    windows = np.stack(
        [_last_window(Path(item), data["columns"], data["window"]) for item in inputs]
    )
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    forecast = signature(values=tf.constant(windows, tf.float32))["forecast"].numpy()
    return [
        {
            "input": item,
            "forecast": {
                t: [float(v) for v in values[:, i]] for i, t in enumerate(data["targets"])
            },
        }
        for item, values in zip(inputs, forecast, strict=True)
    ]


def _generate(tf, version: Path, prompts: list[str], length: int, temperature: float):
    """A text generator: each input is a prompt; the model writes `length` more characters."""
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    out = signature(
        prompt=tf.constant(prompts),
        length=tf.constant(length, tf.int32),
        temperature=tf.constant(temperature, tf.float32),
    )["generated"].numpy()
    return [
        {"input": p, "generated": g.decode("utf-8", "replace")}
        for p, g in zip(prompts, out, strict=True)
    ]


def _last_window(path: Path, columns: list[str], window: int):
    import csv
    import math

    import numpy as np

    if not path.is_file():
        raise UserError(f"{path}: no such file (a forecaster reads a CSV of recent rows)")
    rows = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            # Names stripped as training reads them: `time, temp` names the column "temp".
            reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
            missing = [c for c in columns if c not in reader.fieldnames]
            if missing:
                raise UserError(f"{path}: missing column(s) {', '.join(missing)} the model reads")
            for row in reader:
                values = []
                for c in columns:
                    where = f"{path}: line {reader.line_num}, column {c}"
                    try:
                        value = float(row[c])
                    except (TypeError, ValueError):  # TypeError: a short row (None)
                        raise UserError(f"{where}: {row[c]!r} is not a number") from None
                    if not math.isfinite(value):
                        raise UserError(f"{where}: {row[c]!r} is not a finite number")
                    values.append(value)
                rows.append(values)
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a UTF-8 CSV file (byte {e.start})") from None
    except csv.Error as e:
        raise UserError(f"{path}: not a readable CSV file ({e})") from None
    if len(rows) < window:
        raise UserError(f"{path}: {len(rows)} rows; the model needs the last {window}")
    return np.asarray(rows[-window:], np.float32)


def _labels(inputs: list[str]) -> list[str]:
    out = []
    for item in inputs:
        path = Path(item)
        if path.suffix == ".txt" and path.is_file():
            out.extend(f"{item}:{i}" for i, _ in enumerate(_text_lines(path), 1))
        else:
            out.append(item)
    return out


def _check_text_argument(item: str) -> Path:
    """A text model's argument is the text itself or a `.txt` file of one text per line. A
    missing `.txt` file, or any other file, is refused: its name is not the text meant."""
    path = Path(item)
    if path.suffix == ".txt" and not os.path.isfile(item):
        raise UserError(f"{item}: no such file (a .txt file holds one text per line)")
    if path.suffix != ".txt" and os.path.isfile(item):  # os.path: no error on a long text
        raise UserError(
            f"{item}: a file, not text; a text model reads text arguments or .txt files (one "
            "text per line)"
        )
    return path


def _text_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(
            f"{path}: not UTF-8 text (byte {e.start}, line {line}); save it as UTF-8"
        ) from None
    # Lines end at "\n" only, as in the file's own count (str.splitlines also breaks at
    # U+2028, \x85 and \x0c, which reviews can hold).
    lines = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    if not lines:
        raise UserError(f"{path}: no text in it (a .txt file holds one text per line)")
    return lines


def _load_inputs(tf, inputs: list[str], serving: dict[str, Any]):
    """The batch for the serving signature, and a name for each of its rows."""
    dtype = serving.get("input_dtype")
    if dtype == "string":
        texts: list[str] = []
        for item in inputs:
            path = _check_text_argument(item)
            texts.extend(_text_lines(path) if path.suffix == ".txt" and path.is_file() else [item])
        return tf.constant(texts), _labels(inputs)
    if dtype == "uint8":
        shape = serving["input_shape"][1:]
        return tf.stack([_image(tf, Path(item), shape) for item in inputs]), list(inputs)
    if dtype == "float32" and len(serving["input_shape"]) == 3:  # (batch, length, channels)
        import numpy as np

        shape = serving["input_shape"][1:]
        parts = [_sequences(Path(item), shape) for item in inputs]
        labels = [
            item if len(rows) == 1 else f"{item}:{i}"
            for item, rows in zip(inputs, parts, strict=True)
            for i in range(1, len(rows) + 1)
        ]
        return tf.constant(np.concatenate(parts)), labels
    raise UserError(
        "harness predict supports image, text and sequence models, not input "
        f"{dtype} {serving.get('input_shape')}"
    )


def _sequences(path: Path, shape: list[int]):
    """Sequences of `shape` (length, channels) from a `.npy` array (one sequence, or a batch
    of them) or a `.csv` file (a row of length x channels numbers per sequence, no header)."""
    import warnings

    import numpy as np

    if not os.path.exists(path):  # os.path: False, not OSError, for a name too long
        raise UserError(f"{path}: no such file")
    if not path.is_file() or path.suffix not in (".npy", ".csv"):
        raise UserError(f"{path}: not a .npy or .csv file of sequences")
    try:
        if path.suffix == ".npy":
            x = np.load(path, allow_pickle=False)
        else:
            with warnings.catch_warnings():  # an empty file: refused below, not warned of
                warnings.simplefilter("ignore")
                x = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
            if x.size == 0:
                raise UserError(f"{path}: no sequences in it (one row of numbers per sequence)")
    except (ValueError, OSError, EOFError) as e:
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a readable array of numbers ({first})") from None
    length, channels = shape
    if path.suffix == ".csv":  # a row per sequence: length x channels numbers, step by step
        fits = x.shape[1] == length * channels
        x = x.reshape(len(x), length, channels) if fits else x
    else:  # (length, channels) or (n, length, channels); (length,) / (n, length) for 1 channel
        if channels == 1 and x.shape[-1:] == (length,) and x.ndim <= 2:
            x = x[..., None]
        fits = x.shape[-2:] == (length, channels) and x.ndim in (2, 3)
        x = x.reshape(-1, length, channels) if fits else x
    if x.dtype.kind not in "iuf" or not fits or x.size == 0:
        wanted = (
            f"rows of {length * channels} numbers"
            if path.suffix == ".csv"
            else f"an array ({length}, {channels}) or (N, {length}, {channels})"
        )
        raise UserError(
            f"{path}: expected sequences of {length} steps x {channels} channels ({wanted}), "
            f"got {x.dtype} array of shape {x.shape}"
        )
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise UserError(f"{path}: holds values that are not finite numbers (NaN or inf)")
    return x


def _image(tf, path: Path, shape: list[int]):
    if not os.path.exists(path):  # os.path: False, not OSError, for a name too long
        raise UserError(f"{path}: no such file")
    if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UserError(f"{path}: not an image file ({', '.join(sorted(IMAGE_SUFFIXES))})")
    from pipelines.image_sources import to_channels

    try:  # decoded as stored, then converted, as in training (a GIF decodes only to RGB)
        stored = tf.io.decode_image(tf.io.read_file(str(path)), expand_animations=False)
        image = to_channels(tf, stored, shape[-1])
    except tf.errors.InvalidArgumentError:
        raise UserError(f"{path}: not a readable image") from None
    if list(image.shape[:2]) != shape[:2]:
        image = tf.cast(tf.image.resize(image, shape[:2]), tf.uint8)
    return image
