"""`harness predict`: load an exported SavedModel and run its serving signature on raw inputs."""

from __future__ import annotations

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
    export_dir: Path, inputs: list[str], length: int = 200, temperature: float = 0.8
) -> list[dict[str, Any]]:
    """Runs `serving_default` on image files or text lines (top class per input), or a
    forecaster on CSV files (the forecast per target)."""
    import numpy as np
    import tensorflow as tf

    version = resolve_version(export_dir)
    manifest = read_json(version / "manifest.json", {})
    serving = manifest.get("serving", {})
    if "window" in manifest.get("data", {}):
        return _forecast(tf, version, manifest, inputs)
    if any(i["name"] == "length" for i in serving.get("inputs", [])):
        return _generate(tf, version, inputs, length, temperature)
    batch = _load_inputs(tf, inputs, serving)
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    outputs = signature(**{serving.get("input", "inputs"): batch})
    if "decoded" in outputs:  # a sequence-to-sequence model: strings in, strings out
        decoded = [d.decode("utf-8", "replace") for d in outputs["decoded"].numpy()]
        return [{"input": i, "decoded": d} for i, d in zip(_labels(inputs), decoded, strict=True)]
    probs = np.asarray(next(iter(outputs.values())))
    names = manifest.get("data", {}).get("class_names") or []
    rows = []
    for source, p in zip(_labels(inputs), probs, strict=True):
        top = int(np.argmax(p))
        rows.append(
            {
                "input": source,
                "class": names[top] if top < len(names) else top,
                "probability": float(p[top]),
            }
        )
    return rows


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

    import numpy as np

    if not path.is_file():
        raise UserError(f"{path}: no such file (a forecaster reads a CSV of recent rows)")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{path}: missing column(s) {', '.join(missing)} the model reads")
        try:
            rows = [[float(row[c]) for c in columns] for row in reader]
        except ValueError as e:
            raise UserError(f"{path}: a value is not a number ({e})") from None
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


def _text_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def _load_inputs(tf, inputs: list[str], serving: dict[str, Any]):
    dtype = serving.get("input_dtype")
    if dtype == "string":
        texts: list[str] = []
        for item in inputs:
            path = Path(item)
            texts.extend(_text_lines(path) if path.suffix == ".txt" and path.is_file() else [item])
        return tf.constant(texts)
    if dtype == "uint8":
        shape = serving["input_shape"][1:]
        return tf.stack([_image(tf, Path(item), shape) for item in inputs])
    raise UserError(f"harness predict supports image and text models, not input {dtype!r}")


def _image(tf, path: Path, shape: list[int]):
    if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UserError(f"{path}: not an image file ({', '.join(sorted(IMAGE_SUFFIXES))})")
    try:
        image = tf.io.decode_image(
            tf.io.read_file(str(path)), channels=shape[-1], expand_animations=False
        )
    except tf.errors.InvalidArgumentError:
        raise UserError(f"{path}: not a readable image") from None
    if list(image.shape[:2]) != shape[:2]:
        image = tf.cast(tf.image.resize(image, shape[:2]), tf.uint8)
    return image
