"""Where labelled images come from: a TFDS dataset, a `.npz` of arrays, or a class-per-folder tree.

Every source yields `(uint8 image HxWxC, int label)` examples of one split, selected by index
range or by an explicit index list (for random or stratified validation carve-outs).
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from harness_core.errors import UserError
from pipelines import tfds_source
from pipelines.base import content_digest

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


class TfdsImages:
    """A TFDS image classification dataset, by name."""

    contiguous = True  # TFDS shuffles at write time: a contiguous slice is a random sample

    def __init__(self, name: str, data_dir: Path, download: bool):
        self.name, self.data_dir, self.download = name, data_dir, download

    def check(self) -> None:
        tfds_source.ensure_prepared(self.name, self.data_dir, self.download)

    def info(self) -> dict[str, Any]:
        info = tfds_source.builder(self.name, self.data_dir).info
        image, label = info.supervised_keys or (None, None)
        if image is None or not hasattr(info.features[label], "num_classes"):
            raise UserError(f"data.dataset {self.name!r} is not an image classification dataset")
        if "train" not in info.splits or "test" not in info.splits:
            raise UserError(f"data.dataset {self.name!r} needs train and test splits")
        return {
            "shape": tuple(info.features[image].shape),
            "class_names": list(info.features[label].names),
            "counts": {s: info.splits[s].num_examples for s in ("train", "test")},
            "identity": f"tfds:{self.name}:{info.version}",
        }

    def labels(self, split: str) -> np.ndarray:
        import tensorflow_datasets as tfds

        ds = tfds.load(
            self.name,
            split=split,
            data_dir=str(self.data_dir),
            download=False,
            decoders={"image": tfds.decode.SkipDecoding()},
        )
        return np.fromiter((int(ex["label"]) for ex in ds.as_numpy_iterator()), np.int64)

    def dataset(self, split: str, start: int, stop: int):
        return tfds_source.load(self.name, f"{split}[{start}:{stop}]", self.data_dir)


def check_labels(
    path: Path, name: str, labels: np.ndarray, num_classes: int | None, counted_by: str = ""
) -> None:
    """Integer class ids in [0, num_classes) (>= 0 when None), one per example; names the
    first bad one, and what `num_classes` came from (`counted_by`, e.g. "class_names"), which
    may be the array that is wrong."""
    if labels.dtype.kind not in "iu":
        raise UserError(f"{path}: {name} must hold integer class ids, got {labels.dtype}")
    if not len(labels):
        raise UserError(f"{path}: {name} is empty")
    flat = labels.reshape(len(labels), -1)
    if flat.shape[1] != 1:
        raise UserError(f"{path}: {name} must hold one class id per example, got {labels.shape}")
    limit = np.iinfo(np.int64).max if num_classes is None else num_classes
    bad = np.flatnonzero((flat[:, 0] < 0) | (flat[:, 0] >= limit))
    if len(bad):
        raise UserError(
            f"{path}: {name}[{bad[0]}] = {flat[bad[0], 0]} is not a class id "
            f"{'>= 0' if num_classes is None else f'0..{num_classes - 1}'} "
            f"({len(bad)} such labels"
            f"{f'; {counted_by} names {num_classes} classes' if counted_by else ''})"
        )


def id_names(where: str, ids: np.ndarray) -> list[str]:
    """Class names "0".."top" for integer class ids given without names. Ids that leave most
    of 0..top unused (zip codes, a database's keys) are refused: the model would have one
    class per integer up to the largest (90,211 outputs for ids 0 and 90210)."""
    distinct = np.unique(ids)
    top = int(distinct[-1])
    if top + 1 > max(2 * len(distinct), len(distinct) + 10):
        raise UserError(
            f"{where} hold {len(distinct)} distinct class ids up to {top}: a model would have "
            f"{top + 1} classes; renumber them 0..{len(distinct) - 1} or give class names"
        )
    return [str(i) for i in range(top + 1)]


def check_classes(path: Path, y_train: np.ndarray, y_test: np.ndarray) -> None:
    """Training labels of one class only (a one-unit softmax learns nothing and scores 0), or
    test labels of a class the training labels lack (no model can learn it: its test score
    would be capped without a word)."""
    seen = np.unique(y_train)
    if len(seen) < 2:
        raise UserError(f"{path}: y_train has 1 class ({seen[0]}); need at least 2")
    unseen = np.setdiff1d(np.unique(y_test), seen)
    if len(unseen):
        count = int(np.isin(y_test, unseen).sum())
        raise UserError(
            f"{path}: y_test has class {unseen[0]} ({count} test example{'s' * (count > 1)} "
            f"of {len(unseen)} such class{'es' * (len(unseen) > 1)}) that y_train lacks; "
            "every test class needs training examples"
        )


def _check_pixels(path: Path, name: str, x: np.ndarray) -> None:
    """Raw pixels: uint8, or numbers that are whole values in 0..255 (cast exactly). Anything
    else (floats scaled to [0, 1], negative values) would be cast to wrong pixels silently."""
    if x.dtype == np.uint8:
        return
    if x.dtype.kind not in "iuf":
        raise UserError(f"{path}: {name} must hold pixel values, got {x.dtype}")
    with np.errstate(invalid="ignore"):  # NaN and inf: not whole, so refused
        whole = x.dtype.kind != "f" or np.all(np.mod(x, 1) == 0)
        if whole and x.min() >= 0 and x.max() <= 255:
            return
        # Refused: only now the mask that finds the first bad value (NaN compares False).
        bad = ~((x >= 0) & (x <= 255) & (np.mod(x, 1) == 0))
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    where = ", ".join(map(str, first))
    raise UserError(
        f"{path}: {name} must hold raw pixels 0..255 (uint8), got {x.dtype} values such "
        f"as {name}[{where}] = {x[first]:g}; the pipeline rescales itself"
    )


ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_image_arrays(path: Path) -> dict[str, np.ndarray]:
    """An image dataset's `.npz` (x_train, y_train, x_test, y_test), read whole; UserError
    naming the file for a missing array or a corrupt file; an optional `class_names` array
    names the classes. Offline import and `data.arrays` both read through here."""
    try:
        with open(path, "rb") as f:
            # Every zip starts so; np.load would read anything else as a pickle (or a .npy).
            if f.read(2) != b"PK":
                raise UserError(f"{path}: not an .npz archive (numpy.savez writes one)")
        with np.load(path) as f:
            missing = [k for k in ARRAY_KEYS if k not in f.files]
            if missing:
                raise UserError(
                    f"{path}: not a dataset npz: has no array{'s' * (len(missing) > 1)} "
                    f"{', '.join(map(repr, missing))} "
                    f"(it has: {', '.join(f.files) or 'none'}; needs {', '.join(ARRAY_KEYS)})"
                )
            return {k: f[k] for k in (*ARRAY_KEYS, "class_names") if k in f.files}
    except (OSError, ValueError, zlib.error, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"{path}: corrupt or truncated npz file ({e})") from None


class ArrayImages:
    """`x_train, y_train, x_test, y_test` uint8 arrays in a `.npz` file."""

    contiguous = False

    def __init__(self, path: Path, image_size: tuple[int, int] | None = None):
        self.path, self.image_size = path, image_size  # image_size: both splits are resized
        self._arrays: dict[str, np.ndarray] | None = None

    def _load(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            if not self.path.is_file():
                raise UserError(f"data.arrays: {self.path}: no such file")
            self._arrays = load_image_arrays(self.path)
        return self._arrays

    def check(self) -> None:
        names = self._load().get("class_names")
        if names is not None and (names.ndim != 1 or not len(names)):
            raise UserError(f"{self.path}: class_names must be a list of names, got {names.shape}")
        for split in ("train", "test"):
            x, y = self._load()[f"x_{split}"], self._load()[f"y_{split}"]
            if x.ndim not in (3, 4) or len(x) != len(y) or not len(x):
                raise UserError(f"{self.path}: x_{split} must be (N, H, W[, C]) with N labels")
            count = None if names is None else len(names)
            check_labels(self.path, f"y_{split}", y, count, "class_names")
            _check_pixels(self.path, f"x_{split}", x)
        self._check_same_shape()
        check_classes(self.path, self._load()["y_train"], self._load()["y_test"])

    def _check_same_shape(self) -> None:
        """The test images must be what the model takes: the same size as the training ones
        (unless `data.image_size` resizes both) and the same channels."""
        train, test = (image_shape(self._load()[f"x_{split}"]) for split in ("train", "test"))
        if train[-1] != test[-1] or (self.image_size is None and train != test):
            hint = "" if train[-1] != test[-1] else " (data.image_size would resize both)"
            raise UserError(
                f"{self.path}: x_test images are {'x'.join(map(str, test))} but x_train images "
                f"are {'x'.join(map(str, train))}{hint}"
            )

    def info(self) -> dict[str, Any]:
        arrays = self._load()
        shape = image_shape(arrays["x_train"])
        names = arrays.get("class_names")
        if names is None:
            ids = np.concatenate([arrays["y_train"].reshape(-1), arrays["y_test"].reshape(-1)])
            names = id_names(f"{self.path}: y_train and y_test", ids)
        stat = self.path.stat()
        return {
            "shape": tuple(int(s) for s in shape),
            "class_names": [str(n) for n in names],
            "counts": {s: len(arrays[f"y_{s}"]) for s in ("train", "test")},
            "identity": f"npz:{self.path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}",
        }

    def labels(self, split: str) -> np.ndarray:
        return self._load()[f"y_{split}"].astype(np.int64)

    def dataset(self, split: str, indices: np.ndarray):
        import tensorflow as tf

        x = self._load()[f"x_{split}"][indices]
        if x.ndim == 3:
            x = x[..., None]
        y = self._load()[f"y_{split}"][indices].astype(np.int64)
        return tf.data.Dataset.from_tensor_slices((x.astype(np.uint8), y))


class FolderImages:
    """`ROOT/train/<class>/*.png` and `ROOT/test/<class>/*.png` (also JPEG, BMP, GIF)."""

    contiguous = False

    def __init__(self, root: Path, image_size: tuple[int, int] | None, channels: int | None):
        self.root, self.image_size, self._channels = root, image_size, channels

    @property
    def channels(self) -> int:
        """The job's `channels`, else the first training image's own: 1 for grayscale (with
        or without alpha), 3 for colour. Every image is then decoded to that many."""
        if self._channels is None:
            import tensorflow as tf

            path = self._files("train")[0][0]
            native = _decode(tf, tf.io.read_file(path), 0, path).shape[-1]
            self._channels = 1 if native in (1, 2) else 3
        return self._channels

    def _files(self, split: str) -> tuple[list[str], np.ndarray, list[str]]:
        base = self.root / split
        if not base.is_dir():
            raise UserError(f"data.folder: {base} is missing (need train/ and test/ folders)")
        classes = _class_folders(self.root / "train")
        # Train's folders are the classes; a test class it lacks would have no label. One
        # train has and test lacks is only not tested.
        unknown = sorted(set(_class_folders(base)) - set(classes))
        if unknown:
            raise UserError(
                f"data.folder: {base} has class folder(s) {', '.join(unknown)} missing from "
                f"{self.root / 'train'} (train/ names the classes the model learns)"
            )
        files, labels = [], []
        for label, name in enumerate(classes):
            for path in sorted((base / name).glob("*")):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(str(path))
                    labels.append(label)
        if not files:
            raise UserError(f"data.folder: no images under {base}/<class>/")
        return files, np.array(labels, np.int64), classes

    def check(self) -> None:
        """Decodes every image up front: a corrupt file is named here, not hidden in a trial's
        "Graph execution error"; without `image_size` all must have one size."""
        import tensorflow as tf

        _, labels, classes = self._files("train")
        if len(classes) < 2:
            raise UserError(
                f"data.folder: {self.root / 'train'} has 1 class folder ({classes[0]}); "
                "need at least 2"
            )
        counts = np.bincount(labels, minlength=len(classes))
        empty = [c for c, n in zip(classes, counts, strict=True) if not n]
        if empty:
            raise UserError(
                f"data.folder: {self.root / 'train' / empty[0]} has no images: a class needs "
                f"training examples ({len(empty)} such folder{'s' * (len(empty) > 1)})"
            )
        first = None
        for split in ("train", "test"):
            for path in self._files(split)[0]:
                shape = _decode(tf, tf.io.read_file(path), self.channels, path).shape
                first = first or (shape, path)
                if self.image_size is None and shape[:2] != first[0][:2]:
                    raise UserError(
                        f"data.folder: images of mixed sizes ({first[1]} is "
                        f"{first[0][0]}x{first[0][1]}, {path} is {shape[0]}x{shape[1]}); "
                        "set data.image_size to resize them"
                    )

    def info(self) -> dict[str, Any]:
        import tensorflow as tf

        train, _, classes = self._files("train")
        test = self._files("test")[0]
        if self.image_size:
            shape = (*self.image_size, self.channels)
        else:
            shape = tuple(_decode(tf, tf.io.read_file(train[0]), self.channels, train[0]).shape)
        return {
            "shape": shape,
            "class_names": classes,
            "counts": {"train": len(train), "test": len(test)},
            # The disk cache's key: images replaced under the same names and counts (their
            # sizes or times change) make a new cache, not a stale read of the old one.
            "identity": f"folder:{self.root.resolve()}:{content_digest(self.root)}",
        }

    def labels(self, split: str) -> np.ndarray:
        return self._files(split)[1]

    def dataset(self, split: str, indices: np.ndarray):
        import tensorflow as tf

        files, labels, _ = self._files(split)
        files = [files[i] for i in indices]
        ds = tf.data.Dataset.from_tensor_slices((files, labels[indices]))
        size, channels = self.image_size, self.channels

        def load(path, label):
            image = tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
            image = to_channels(tf, image, channels)
            if size:
                image = tf.cast(tf.image.resize(image, size), tf.uint8)
            return image, label

        return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)


def image_shape(x: np.ndarray) -> tuple[int, ...]:
    """(H, W, C) of the images in an (N, H, W[, C]) array: no channel axis is one channel."""
    return x.shape[1:] if x.ndim == 4 else (*x.shape[1:], 1)


def _class_folders(base: Path) -> list[str]:
    """The class folders under `base`, sorted; hidden ones (`.ipynb_checkpoints`) are not."""
    return sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))


def _decode(tf, data, channels: int, path: str):
    try:
        return to_channels(tf, tf.io.decode_image(data, expand_animations=False), channels)
    except tf.errors.InvalidArgumentError:
        raise UserError(f"data.folder: {path} is not a readable image (corrupt?)") from None


def to_channels(tf, image, channels: int):
    """A decoded image (1-4 channels as stored) with `channels` channels: alpha dropped, gray
    to RGB or RGB to gray. Decoding as stored first, then converting, reads every format
    (a GIF decodes only to RGB, a BMP only as stored); `channels=0` keeps them as stored."""
    if channels == 0:
        return image
    stored = tf.shape(image)[-1]
    image = tf.cond(stored == 2, lambda: image[..., :1], lambda: image)  # gray + alpha
    image = tf.cond(stored == 4, lambda: image[..., :3], lambda: image)  # RGB + alpha
    if channels == 1:
        image = tf.cond(
            tf.shape(image)[-1] == 3,
            lambda: tf.cast(tf.image.rgb_to_grayscale(image), tf.uint8),
            lambda: image,
        )
    else:
        image = tf.cond(
            tf.shape(image)[-1] == 1, lambda: tf.image.grayscale_to_rgb(image), lambda: image
        )
    return tf.ensure_shape(image, [None, None, channels])


# Recorded in a stratified job's data.json: a resume must split the data as its start did.
SPLIT_METHOD = "stratified: scikit-learn train_test_split"


def split_indices(
    labels: np.ndarray, fraction: float, stratify: bool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) positions into `labels`, each in a seeded shuffled order: the one
    split of every pipeline. Validation takes round(n * fraction) examples, at least 1: the
    first of a seeded shuffle, or with `stratify` scikit-learn's `train_test_split`, in each
    class's proportion.
    Where scikit-learn cannot stratify, the split says why not in its rules: a class with a
    single example stays in training (it cannot be in both), and a validation set smaller than
    the number of classes (or leaving training fewer) is drawn without stratification."""
    n_val = max(1, round(len(labels) * fraction))
    if not stratify:
        order = np.random.default_rng(seed).permutation(len(labels))
        return order[n_val:], order[:n_val]
    from sklearn.model_selection import train_test_split

    positions = np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    alone = np.isin(labels, classes[counts == 1])
    rest = positions[~alone]
    if len(rest) < 2:
        raise UserError(
            f"data: no validation examples: every class of the {len(labels)} training examples "
            "has one example (stratified splits keep it for training); use more data or "
            "data.stratify: false"
        )
    n_val = min(n_val, len(rest) - 1)
    n_classes = int((counts > 1).sum())
    by_class = labels[rest] if n_classes <= n_val <= len(rest) - n_classes else None
    train, validation = train_test_split(
        rest, test_size=n_val, stratify=by_class, random_state=seed
    )
    # The single examples join training, shuffled in.
    train = np.random.default_rng(seed).permutation(np.concatenate([train, positions[alone]]))
    return train, validation


def split_train(labels: np.ndarray, config: Any) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) row indices into `labels`: a seeded shuffle, the `train_examples`
    subset (random: files are often sorted by class), then the validation share by
    `split_indices`. `config` is a `LabelledSplitsConfig`."""
    order = np.random.default_rng(config.seed).permutation(len(labels))[: config.train_examples]
    train, validation = split_indices(
        labels[order], config.validation_split, config.stratify, config.seed
    )
    # Shuffled order (not class-sorted), so a small shuffle buffer still mixes classes.
    return order[train], order[validation]
