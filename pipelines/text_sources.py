"""Where a text classification job's examples come from, and how train is split.

Two sources with one interface (`check_available`, `class_names`, `sizes`, `raw(part)`,
`identity`, `default_cache_dir`): a TFDS dataset with (text, label) supervised keys, or the
user's CSV/JSONL files. `raw(part)` gives (text, label) examples of "train", "validation" or
"test" in a fixed order; TensorFlow is imported only there and in the TFDS metadata calls.
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness_core.errors import UserError
from pipelines import tfds_source
from pipelines.image_sources import id_names, split_train
from pipelines.text_files import Rows, read_rows

if TYPE_CHECKING:
    from pipelines.text import TextClassificationConfig

# A class id as text: "3", and "3.0" as pandas writes an int column that held a NaN.
_INT_LABEL = re.compile(r"-?\d+(\.0*)?")


def safe_name(name: str) -> str:
    """`name` with every run of characters unsafe in a file name replaced by '_'."""
    return re.sub(r"[^\w.-]+", "_", name)


class TfdsTexts:
    """A TFDS dataset with (text, label) supervised keys. Validation is the train split's tail:
    contiguous slices are fair because TFDS shuffles examples when it writes them."""

    def __init__(self, config: TextClassificationConfig):
        self.config = config
        self.data_dir = tfds_source.resolve_data_dir(config.data_dir)
        self.name = safe_name(config.dataset)

    def check_available(self) -> None:
        tfds_source.ensure_prepared(self.config.dataset, self.data_dir, self.config.download)

    @functools.cached_property
    def info(self):
        return tfds_source.builder(self.config.dataset, self.data_dir).info

    def class_names(self) -> list[str]:
        import tensorflow_datasets as tfds

        text, label = self.info.supervised_keys or (None, None)
        features = self.info.features
        if (
            text is None
            or not isinstance(features[text], tfds.features.Text)
            or not hasattr(features[label], "names")
        ):
            raise UserError(
                f"data.dataset {self.config.dataset!r} is not a text classification dataset "
                "(needs (text, label) supervised keys)"
            )
        return list(features[label].names)

    def sizes(self) -> tuple[int, int, int]:
        splits = self.info.splits
        if "train" not in splits or "test" not in splits:
            raise UserError(f"data.dataset {self.config.dataset!r} needs train and test splits")
        total = splits["train"].num_examples
        n = min(self.config.train_examples or total, total)
        n_val = max(1, round(n * self.config.validation_split))
        n_test = splits["test"].num_examples
        return n - n_val, n_val, min(self.config.test_examples or n_test, n_test)

    def _slice(self, part: str) -> str:
        n_train, n_val, n_test = self.sizes()
        return {
            "train": f"train[0:{n_train}]",
            "validation": f"train[{n_train}:{n_train + n_val}]",
            "test": f"test[0:{n_test}]",
        }[part]

    def raw(self, part: str):
        """(text, label) examples of "train", "validation" or "test", in a fixed order."""
        return tfds_source.load(self.config.dataset, self._slice(part), self.data_dir)

    def identity(self) -> dict[str, str]:
        """What the training text is, for the vocabulary cache key."""
        return {
            "dataset": self.config.dataset,
            "version": str(self.info.version),
            "data_dir": str(self.data_dir),  # a local import may differ from the download
            "train": self._slice("train"),
        }

    def default_cache_dir(self) -> Path:
        return self.data_dir / "harness_cache"


class FileTexts:
    """User CSV/JSONL files, parsed once with the standard library. Validation rows are drawn
    at random (with `seed`) from the train file, per class when `stratify` is set."""

    def __init__(self, config: TextClassificationConfig):
        self.config = config
        self.train_path = Path(config.files.train).expanduser().resolve()
        self.test_path = Path(config.files.test).expanduser().resolve()
        self.name = safe_name(self.train_path.name.split(".")[0])

    def check_available(self) -> None:
        _ = self._ids  # parses both files: a bad row stops the job before any trial

    @functools.cached_property
    def _rows(self) -> tuple[Rows, Rows]:
        fields = (self.config.text_field, self.config.label_field)
        return read_rows(self.train_path, *fields), read_rows(self.test_path, *fields)

    @functools.cached_property
    def _classes(self) -> tuple[list[str], bool]:
        """Class names, and whether labels are int class ids (else names, sorted)."""
        train, test = self._rows
        if all(_is_int_label(x) for x in train.labels + test.labels):
            ids = np.array([_class_id(x) for x in train.labels + test.labels])
            where = f"{train.path} and {test.path}: the {self.config.label_field!r} fields"
            return id_names(where, ids), True
        return sorted({str(x) for x in train.labels}), False

    @functools.cached_property
    def _ids(self) -> tuple[np.ndarray, np.ndarray]:
        names, as_int = self._classes
        train, test = self._rows
        if len({str(x) for x in train.labels}) < 2:
            raise UserError(
                f"{train.path}: field {self.config.label_field!r} has 1 class; need at least 2"
            )
        train_ids, test_ids = _label_ids(train, names, as_int), _label_ids(test, names, as_int)
        unseen = np.flatnonzero(~np.isin(test_ids, train_ids))
        if len(unseen):  # (names are the train file's own when labels are not ids)
            first, rows = unseen[0], f"{len(unseen)} such row{'s' * (len(unseen) > 1)}"
            raise UserError(
                f"{test.path}: line {test.lines[first]}: label {test.labels[first]!r} is a "
                f"class the train file lacks ({rows}); every test class needs training examples"
            )
        return train_ids, test_ids

    def class_names(self) -> list[str]:
        _ = self._ids  # validates every label before a model is sized from the names
        return self._classes[0]

    @functools.cached_property
    def _split(self) -> tuple[np.ndarray, np.ndarray]:
        return split_train(self._ids[0], self.config)

    def sizes(self) -> tuple[int, int, int]:
        n_test = len(self._ids[1])
        train, validation = self._split
        return len(train), len(validation), min(self.config.test_examples or n_test, n_test)

    def _indices(self, part: str) -> tuple[Rows, np.ndarray, np.ndarray]:
        if part == "test":
            return self._rows[1], np.arange(self.sizes()[2]), self._ids[1]
        train, validation = self._split
        return self._rows[0], train if part == "train" else validation, self._ids[0]

    def raw(self, part: str):
        """(text, label) examples of "train", "validation" or "test", in a fixed order."""
        import tensorflow as tf

        rows, indices, ids = self._indices(part)
        texts = [rows.texts[i] for i in indices]
        return tf.data.Dataset.from_tensor_slices((tf.constant(texts, tf.string), ids[indices]))

    def identity(self) -> dict[str, str]:
        """The training texts themselves (not paths or mtimes): moving or touching a file keeps
        its vocabulary; any edit, split or subset change that alters training text does not."""
        rows, indices, _ = self._indices("train")
        blob = "\0".join(rows.texts[i] for i in indices).encode()
        return {"train_text_sha256": hashlib.sha256(blob).hexdigest()}

    def default_cache_dir(self) -> Path:
        return self.train_path.parent / ".harness_cache"


def _is_int_label(label: int | str) -> bool:
    # CSV stores every label as a string, so "3" is a class id like JSON's 3.
    return isinstance(label, int) or bool(_INT_LABEL.fullmatch(label))


def _class_id(label: int | str) -> int:
    return label if isinstance(label, int) else int(label.split(".")[0])


def _label_ids(rows: Rows, names: list[str], as_int: bool) -> np.ndarray:
    index = {name: i for i, name in enumerate(names)}
    ids = []
    for line, label in zip(rows.lines, rows.labels, strict=True):
        key = str(_class_id(label)) if as_int else str(label)
        if key not in index:
            why = "is negative" if as_int else f"is not a class of the train file ({names})"
            raise UserError(f"{rows.path}: line {line}: label {label!r} {why}")
        ids.append(index[key])
    return np.array(ids, dtype=np.int64)
