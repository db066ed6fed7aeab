"""Offline import: a local copy of a dataset -> TFDS's prepared layout under the data dir.

The dataset's own registered TFDS builder is subclassed so that only where the examples come from
changes: the name, version, features and file format stay TFDS's, and `tfds.load(name)` cannot
tell an imported copy from a downloaded one. TFDS writes into an `incomplete.*` folder and renames
it at the end, so a killed import never leaves a half-written dataset behind.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import json
import shutil
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness_core.errors import UserError
from pipelines.image_sources import check_labels, image_shape, load_image_arrays


@dataclass(frozen=True)
class Importer:
    """Reads one local file format and yields `(key, example)` per split; `read` gets the
    dataset's TFDS info, to check the file against its features before anything is written."""

    name: str
    filename: str
    read: Callable[[Path, Any], dict[str, Iterator[tuple[Any, dict[str, Any]]]]]


def _read_npz_images(
    path: Path, info: Any, with_id: bool = False
) -> dict[str, Iterator[tuple[Any, dict[str, Any]]]]:
    """`x_train, y_train, x_test, y_test` uint8 arrays of the dataset's image shape and its
    class ids; `with_id` adds CIFAR's "train_00042"."""
    arrays = load_image_arrays(path)
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim not in (3, 4) or x.dtype != np.uint8 or len(x) != len(y):
            raise UserError(
                f"{path}: x_{split} must be uint8 (N, H, W[, C]) with one label per image, got "
                f"{x.dtype} {x.shape} and {len(y)} labels"
            )
        _check_image_shape(path, f"x_{split}", x, info)
        check_labels(path, f"y_{split}", y, info.features["label"].num_classes)

    def examples(split: str):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"].reshape(-1)
        for i in range(len(x)):
            example = {"image": x[i] if x.ndim == 4 else x[i][..., None], "label": int(y[i])}
            if with_id:
                example["id"] = f"{split}_{i:05d}"
            yield i, example

    return {"train": examples("train"), "test": examples("test")}


def _check_image_shape(path: Path, name: str, x: np.ndarray, info: Any) -> None:
    """Images of the dataset's own shape: TFDS would refuse any other only while writing,
    with a traceback printing the pixels."""
    h, w, c = info.features["image"].shape
    if image_shape(x) != (h, w, c):
        gray = f" or (N, {h}, {w})" if c == 1 else ""
        raise UserError(
            f"{path}: {name} has shape {x.shape}, but {info.name} images are {h}x{w}x{c}: "
            f"expected (N, {h}, {w}, {c}){gray}"
        )


def _read_imdb_jsonl(path: Path, info: Any) -> dict[str, Iterator[tuple[Any, dict[str, Any]]]]:
    rows: dict[str, list[tuple[str, dict[str, Any]]]] = {"train": [], "test": []}
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                split, key, example = _parse_review(path, line_no, line)
                rows[split].append((key, example))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        raise UserError(f"{path}: corrupt or truncated gzip file ({e})") from None
    if not rows["train"] or not rows["test"]:
        raise UserError(f"{path}: needs both train and test reviews")
    return {split: iter(examples) for split, examples in rows.items()}


def _parse_review(path: Path, line_no: int, line: str) -> tuple[str, str, dict[str, Any]]:
    try:
        row = json.loads(line)
        split, label, text = row["split"], int(row["label"]), row["text"]
        key = f"{split}_{label}_{row['id']}"
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path}: line {line_no} is not an IMDB review record ({e})") from None
    if split not in ("train", "test") or label not in (0, 1):
        raise UserError(f"{path}: line {line_no}: split must be train/test and label 0/1")
    return split, key, {"text": text, "label": label}


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{split} {n}" for split, n in sorted(counts.items()))


FASHION_MNIST = Importer("fashion_mnist", "fashion_mnist.npz", _read_npz_images)
MNIST = Importer("mnist", "mnist.npz", _read_npz_images)
CIFAR10 = Importer("cifar10", "cifar10.npz", functools.partial(_read_npz_images, with_id=True))
IMDB_REVIEWS = Importer("imdb_reviews", "imdb_reviews.jsonl.gz", _read_imdb_jsonl)


def import_dataset(importer: Importer, path: Path, data_dir: Path) -> dict[str, int]:
    """Prepares `importer.name` in `data_dir` from `path`; returns examples per split."""
    import tensorflow_datasets as tfds

    if not path.is_file():
        raise UserError(f"{path}: no such file (expected a copy of {importer.filename})")
    base = tfds.builder_cls(importer.name)
    examples: dict[str, Any] = {}

    class LocalCopy(base, skip_registration=True):
        name = importer.name

        def _split_generators(self, dl_manager):
            return examples

    tfds.disable_progress_bar()  # the CLI shows its own spinner; TFDS's bars garble logs
    from pipelines.tfds_source import no_bucket_lookup

    with no_bucket_lookup():
        builder = LocalCopy(data_dir=str(data_dir))
    examples.update(importer.read(path, builder.info))  # checked here, before TFDS writes
    marker = Path(builder.data_dir).parent / ".harness_import.json"
    digest = _sha256(path)
    if builder.is_prepared():
        # Importing the same file again is a no-op, so setup commands can be re-run; the file
        # was read and checked all the same, and a different copy is not silently kept: its
        # checksum (or, for a copy imported before checksums were kept, its counts) differs.
        existing = {name: split.num_examples for name, split in builder.info.splits.items()}
        given = {split: sum(1 for _ in rows) for split, rows in examples.items()}
        before = json.loads(marker.read_text()) if marker.exists() else {}
        if given != existing or before.get("sha256", digest) != digest:
            source = f", imported from {before['file']}" if "file" in before else ""
            raise UserError(
                f"{path}: {importer.name} in {data_dir} is already a different copy "
                f"({_counts(existing)}{source}; this file: {_counts(given)}); delete "
                f"{marker.parent} to import this one"
            )
        return existing
    # TFDS prints "Downloading and preparing dataset ..." and "... downloaded and prepared":
    # nothing is downloaded here, and the CLI says what was imported in one line of its own.
    made = (data_dir, marker.parent, data_dir / "downloads")
    with _removed_on_failure(*made), contextlib.redirect_stdout(io.StringIO()):
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(try_download_gcs=False)
        )
    marker.write_text(json.dumps({"file": str(path.resolve()), "sha256": digest}) + "\n")
    return {name: split.num_examples for name, split in builder.info.splits.items()}


@contextlib.contextmanager
def _removed_on_failure(*paths: Path) -> Iterator[None]:
    """Those of `paths` that do not exist yet are removed if the block fails: TFDS's
    `incomplete.*` rename keeps out a half-written version, not the folders made around it."""
    new = [p for p in paths if not p.exists()]
    try:
        yield
    except BaseException:
        for p in reversed(new):
            shutil.rmtree(p, ignore_errors=True)
        raise


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
