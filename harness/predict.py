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


def predict(export_dir: Path, inputs: list[str]) -> list[dict[str, Any]]:
    """Runs `serving_default` on image files or text lines; returns top class per input."""
    import numpy as np
    import tensorflow as tf

    version = resolve_version(export_dir)
    manifest = read_json(version / "manifest.json", {})
    serving = manifest.get("serving", {})
    batch = _load_inputs(tf, inputs, serving)
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    outputs = signature(**{serving.get("input", "inputs"): batch})
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
