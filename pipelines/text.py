"""Text classification from a TFDS (text, label) dataset (imdb_reviews, ...) or user CSV/JSONL.

Raw text -> `StandardizeText` (HTML tags, case, punctuation) -> `TextVectorization` token ids
(0 = padding/mask, 1 = out-of-vocabulary). With `ngrams: 2` the tokens are a text's words
followed by its word pairs (TextVectorization's ngrams: all unigrams first, then all bigrams, so
a `sequence_length` under twice the text's length cuts bigrams first). The vocabulary is adapted
on the training split only and cached on disk, one JSON file per source, training rows,
standardization, n-grams and vocab size:

    <cache_dir>/text_vocab/<source>-<vocab_size>-<key>.json   {"key": {...}, "tokens": [...]}

`cache_dir` defaults to `<data_dir>/harness_cache` (TFDS) or `.harness_cache/` next to the train
file. Files are written atomically, so a killed adapt never leaves a half-written vocabulary.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import keras
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from harness.errors import UserError
from harness.jobdir import atomic_write_json
from pipelines import tfds_source
from pipelines.base import (
    DataMeta,
    Pipeline,
    PipelineConfig,
    Serving,
    TrainData,
    for_training,
)

_VOCAB_FORMAT = 1  # bump when the cached vocabulary would differ for the same key
_RESERVED_TOKENS = 2  # index 0 = padding (mask), 1 = out-of-vocabulary
_VECTORIZE_BATCH = 512
_HTML_TAG = r"<[^>]+>"
_PUNCTUATION = r'[!"#$%&()\*\+,\-\./:;<=>?@\[\\\]^_`{|}~\']'  # Keras's own default set
_INT_LABEL = re.compile(r"\s*-?\d+\s*")
_FILES_ONLY = ("text_field", "label_field", "stratify")
_TUNABLE = ("vocab_size", "sequence_length", "ngrams")  # each with `<name>_choices`


@keras.saving.register_keras_serializable(package="harness")
class StandardizeText:
    """Raw text -> words without HTML tags or punctuation, lowercased (TF string ops).

    A `TextVectorization(standardize=...)` callable. A class rather than a function so its
    options travel with a saved `.keras` model; registered, so `keras.models.load_model` finds
    it once `pipelines.text` is imported.
    """

    def __init__(self, lowercase: bool = True, strip_html: bool = True):
        self.lowercase = lowercase
        self.strip_html = strip_html

    def __call__(self, text):
        import tensorflow as tf

        if self.strip_html:  # before punctuation, or `<br />` would become the word "br"
            text = tf.strings.regex_replace(text, _HTML_TAG, " ")
        if self.lowercase:
            text = tf.strings.lower(text, encoding="utf-8")
        return tf.strings.regex_replace(text, _PUNCTUATION, "")

    def get_config(self) -> dict[str, bool]:
        return {"lowercase": self.lowercase, "strip_html": self.strip_html}

    @classmethod
    def from_config(cls, config: dict[str, bool]) -> StandardizeText:
        return cls(**config)


def _file_format(path: str) -> str | None:
    name = path.lower().removesuffix(".gz")
    return next((fmt for fmt in ("csv", "jsonl") if name.endswith(f".{fmt}")), None)


class TextFiles(BaseModel):
    """User files, one example per JSONL line or CSV row (`.gz` allowed)."""

    model_config = ConfigDict(extra="forbid")
    train: str
    test: str

    @field_validator("train", "test")
    @classmethod
    def _known_format(cls, path: str) -> str:
        if _file_format(path) is None:
            raise ValueError("must end in .csv or .jsonl (optionally followed by .gz)")
        return path


class TextClassificationConfig(PipelineConfig):
    """The `data:` section of a text classification job: a TFDS `dataset` or user `files`."""

    model_config = ConfigDict(extra="forbid")
    pipeline: Literal["text_classification"] = "text_classification"
    dataset: str | None = "imdb_reviews"
    data_dir: str | None = None
    download: bool = True
    files: TextFiles | None = None
    text_field: str = "text"
    label_field: str = "label"
    lowercase: bool = True
    strip_html: bool = True
    vocab_size: int = Field(10_000, ge=_RESERVED_TOKENS + 1)
    sequence_length: PositiveInt = 256
    vocab_size_choices: list[Annotated[int, Field(ge=_RESERVED_TOKENS + 1)]] | None = Field(
        None, min_length=1
    )
    sequence_length_choices: list[PositiveInt] | None = Field(None, min_length=1)
    ngrams: Literal[1, 2] = 1
    ngrams_choices: list[Literal[1, 2]] | None = Field(None, min_length=1)
    cache_dir: str | None = None
    validation_split: float = Field(0.2, gt=0.0, lt=1.0)
    stratify: bool = False
    train_examples: PositiveInt | None = None
    test_examples: PositiveInt | None = None
    batch_size: PositiveInt = 64
    cache: Literal["memory", "none"] = "memory"
    shuffle_buffer: PositiveInt = 10_000
    seed: int = 0
    deterministic: bool = False

    @model_validator(mode="before")
    @classmethod
    def _files_replace_default_dataset(cls, data: Any) -> Any:
        # `dataset` defaults to IMDB; giving only `files` means "my files instead".
        if isinstance(data, dict) and data.get("files") is not None and "dataset" not in data:
            data = {**data, "dataset": None}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> TextClassificationConfig:
        if (self.dataset is None) == (self.files is None):
            raise ValueError("give exactly one of dataset (a TFDS name) or files: {train, test}")
        _check_files_only_options(self)
        for name in _TUNABLE:
            _check_default_among_choices(
                name, getattr(self, name), getattr(self, f"{name}_choices")
            )
        return self


def _check_files_only_options(config: TextClassificationConfig) -> None:
    # Compared with the defaults, not `model_fields_set`: workers re-validate a full dump.
    fields = TextClassificationConfig.model_fields
    changed = [k for k in _FILES_ONLY if getattr(config, k) != fields[k].default]
    if config.dataset is not None and changed:
        raise ValueError(
            f"{changed[0]} applies to files only: a TFDS dataset has its own (text, label) keys "
            "and its validation set is a contiguous slice of train"
        )


def _check_default_among_choices(name: str, default: int, choices: list[int] | None) -> None:
    if choices and default not in choices:
        raise ValueError(
            f"{name}={default} is the default choice and must be one of {name}_choices {choices}"
        )


class TextClassificationPipeline(Pipeline):
    """Text -> vectorize (per batch) -> cache -> shuffle -> repeat -> batch -> prefetch.

    Token ids come out of the pipeline (the vectorizer is not a model layer during tuning, so
    it runs once per example, not once per epoch). `vectorizer()` gives the same adapted layer
    to an exporter that puts it in front of the model so the exported model takes raw strings.
    """

    Config = TextClassificationConfig
    task = "text_classification"
    config: TextClassificationConfig

    def __init__(self, config: TextClassificationConfig):
        super().__init__(config)
        self.source = _TfdsSource(config) if config.dataset else _FileSource(config)

    @classmethod
    def check_config(cls, config: TextClassificationConfig) -> None:
        if config.dataset is not None:
            tfds_source.check_dataset_name(config.dataset)

    def check_available(self) -> None:
        """Raises UserError when the TFDS copy is missing or a user file is missing/bad."""
        self.source.check_available()

    def declare_hyperparameters(self, hp: Any) -> None:
        """Registers `vocab_size` / `sequence_length` / `ngrams` choices, when the job gives
        any."""
        for name in _TUNABLE:
            choices = getattr(self.config, f"{name}_choices")
            if choices:
                hp.Choice(name, choices, default=getattr(self.config, name))

    def _sizes(self, hp: Any) -> tuple[int, int]:
        """(vocab_size, sequence_length): `hp`'s choices when declared, else the config's."""
        return self._choice(hp, "vocab_size"), self._choice(hp, "sequence_length")

    def _choice(self, hp: Any, name: str) -> int:
        """One tunable option: `hp`'s value when declared, else the config's."""
        return hp.get(name) if hp is not None and name in hp else getattr(self.config, name)

    def _split_sizes(self) -> tuple[int, int, int]:
        n_train, n_val, n_test = self.source.sizes()
        if n_train < self.config.batch_size:
            raise UserError(
                f"data: {n_train} training examples after the validation split is fewer than "
                f"data.batch_size={self.config.batch_size}"
            )
        return n_train, n_val, n_test

    def describe(self, hp: Any = None) -> DataMeta:
        """Counts and classes from TFDS metadata or the parsed files; no vectorizing."""
        vocab_size, sequence_length = self._sizes(hp)
        names = self.source.class_names()
        if len(names) < 2:
            raise UserError(f"data: {self.source.name} has {len(names)} class; need at least 2")
        n_train, n_val, n_test = self._split_sizes()
        return DataMeta(
            task=self.task,
            input_shape=(sequence_length,),
            num_classes=len(names),
            class_names=names,
            num_train=n_train,
            num_validation=n_val,
            num_test=n_test,
            fingerprint=self.config.fingerprint(),
            extra={"vocab_size": vocab_size, "sequence_length": sequence_length},
        )

    def standardize(self) -> StandardizeText:
        """The configured standardization, as a serializable `TextVectorization` callable."""
        return StandardizeText(lowercase=self.config.lowercase, strip_html=self.config.strip_html)

    def vectorizer(self, hp: Any = None) -> keras.layers.TextVectorization:
        """A `TextVectorization` layer with the training split's vocabulary (from the cache,
        adapting first on a miss): raw strings -> int ids, padded with 0 to sequence_length."""
        vocab_size, sequence_length = self._sizes(hp)
        ngrams = self._choice(hp, "ngrams")
        return keras.layers.TextVectorization(
            max_tokens=vocab_size,
            standardize=self.standardize(),
            output_mode="int",
            output_sequence_length=sequence_length,
            vocabulary=self._vocabulary(vocab_size, ngrams),
            ngrams=_ngrams_arg(ngrams),
        )

    def serving(self, model: Any, hp: Any = None) -> Serving:
        """Raw review strings in (the vectorizer inside the graph), class probabilities out."""
        import tensorflow as tf

        vectorizer = self.vectorizer(hp)
        vectorizer(tf.constant(["build"]))  # a layer must be built before export tracks it
        spec = tf.TensorSpec((None,), tf.string, name="text")
        return Serving(
            spec,
            lambda x: {"probabilities": model(vectorizer(x), training=False)},
            tracked=[vectorizer],
        )

    def vocabulary_path(self, hp: Any = None) -> Path:
        """Where the vocabulary for `hp`'s vocab_size and ngrams is cached (it may not exist
        yet)."""
        return self._vocabulary_file(self._sizes(hp)[0], self._choice(hp, "ngrams"))

    def _vocabulary_file(self, vocab_size: int, ngrams: int) -> Path:
        key = self._vocabulary_key(vocab_size, ngrams)
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return self._cache_dir() / "text_vocab" / f"{self.source.name}-{vocab_size}-{digest}.json"

    def _cache_dir(self) -> Path:
        if self.config.cache_dir:
            return Path(self.config.cache_dir).expanduser().resolve()
        return self.source.default_cache_dir()

    def _vocabulary_key(self, vocab_size: int, ngrams: int) -> dict[str, Any]:
        key = {
            "format": _VOCAB_FORMAT,
            "source": self.source.identity(),
            "lowercase": self.config.lowercase,
            "strip_html": self.config.strip_html,
            "vocab_size": vocab_size,
        }
        # Unigram keys stay as they were before `ngrams` existed, so their caches still hit.
        return key if ngrams == 1 else {**key, "ngrams": ngrams}

    def _vocabulary(self, vocab_size: int, ngrams: int) -> list[str]:
        path = self._vocabulary_file(vocab_size, ngrams)
        tokens = _read_vocabulary(path)
        if tokens is None:
            tokens = self._adapt(vocab_size, ngrams)
            key = self._vocabulary_key(vocab_size, ngrams)
            atomic_write_json(path, {"key": key, "tokens": tokens})
        return tokens

    def _adapt(self, vocab_size: int, ngrams: int) -> list[str]:
        layer = keras.layers.TextVectorization(
            max_tokens=vocab_size, standardize=self.standardize(), ngrams=_ngrams_arg(ngrams)
        )
        # Training split only: validation and test words must be as unseen as a user's new text.
        layer.adapt(self.source.raw("train").map(lambda text, _: text).batch(_VECTORIZE_BATCH))
        return [str(token) for token in layer.get_vocabulary(include_special_tokens=False)]

    def _vectorized(self, ds, vectorizer: keras.layers.TextVectorization):
        import tensorflow as tf

        # Vectorize a batch at a time (one op launch per 512 texts, not per text), then unbatch
        # so the cache holds examples and the train batches are drawn from shuffled examples.
        return (
            ds.batch(_VECTORIZE_BATCH)
            .map(lambda text, label: (vectorizer(text), label), num_parallel_calls=tf.data.AUTOTUNE)
            .unbatch()
        )

    def train_data(self, hp: Any = None, replicas: int = 1) -> TrainData:
        """Repeating shuffled train batches of (ids, label) and one pass of validation."""

        n_train, _, _ = self._split_sizes()
        batch = self.config.batch_size * replicas  # global batch: per-replica size x replicas
        vectorizer = self.vectorizer(hp)
        train = self._vectorized(self.source.raw("train"), vectorizer)
        # Cache after vectorizing: standardizing and looking up tokens dominates the step.
        if self.config.cache == "memory":
            train = train.cache()
        train = for_training(train, self.config, batch)
        validation = self._eval_dataset(self.source.raw("validation"), batch, vectorizer)
        return TrainData(train, validation, max(1, n_train // batch), batch)

    def _eval_dataset(self, ds, batch: int, vectorizer=None):
        import tensorflow as tf

        if vectorizer is not None:
            ds = self._vectorized(ds, vectorizer)
        if self.config.cache == "memory":
            ds = ds.cache()
        return ds.batch(batch).prefetch(tf.data.AUTOTUNE)

    def test_data(self, batch_size: int = 256, hp: Any = None):
        """Test batches of (ids, label), vectorized like training data for `hp`."""
        return self._eval_dataset(self.source.raw("test"), batch_size, self.vectorizer(hp))

    def raw_test_data(self, batch_size: int = 256):
        """Test batches of (raw string, label), for a model that has the vectorizer inside."""
        return self._eval_dataset(self.source.raw("test"), batch_size)


def _ngrams_arg(ngrams: int) -> int | None:
    """TextVectorization's `ngrams`: None for words alone, so a unigram vectorizer (and the
    exported models holding it) stays the layer it was before this option."""
    return None if ngrams == 1 else ngrams


def _read_vocabulary(path: Path) -> list[str] | None:
    """The cached tokens, or None on a miss. Only the final name is read, never a temp file."""
    try:
        tokens = json.loads(path.read_text(encoding="utf-8"))["tokens"]
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):  # damaged by hand: adapt again and replace it
        return None
    return tokens if isinstance(tokens, list) else None


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name)


class _TfdsSource:
    """A TFDS dataset with (text, label) supervised keys. Validation is the train split's tail:
    contiguous slices are fair because TFDS shuffles examples when it writes them."""

    def __init__(self, config: TextClassificationConfig):
        self.config = config
        self.data_dir = tfds_source.resolve_data_dir(config.data_dir)
        self.name = _safe_name(config.dataset)

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


@dataclass
class _Rows:
    """Parsed examples of one user file; `lines` name each example's line in errors."""

    path: Path
    lines: list[int]
    texts: list[str]
    labels: list[int | str]


class _FileSource:
    """User CSV/JSONL files, parsed once with the standard library. Validation rows are drawn
    at random (with `seed`) from the train file, per class when `stratify` is set."""

    def __init__(self, config: TextClassificationConfig):
        self.config = config
        self.train_path = Path(config.files.train).expanduser().resolve()
        self.test_path = Path(config.files.test).expanduser().resolve()
        self.name = _safe_name(self.train_path.name.split(".")[0])

    def check_available(self) -> None:
        _ = self._ids  # parses both files: a bad row stops the job before any trial

    @functools.cached_property
    def _rows(self) -> tuple[_Rows, _Rows]:
        fields = (self.config.text_field, self.config.label_field)
        return _read_rows(self.train_path, *fields), _read_rows(self.test_path, *fields)

    @functools.cached_property
    def _classes(self) -> tuple[list[str], bool]:
        """Class names, and whether labels are int class ids (else names, sorted)."""
        train, test = self._rows
        if all(_is_int_label(x) for x in train.labels + test.labels):
            top = max(int(x) for x in train.labels + test.labels)
            return [str(i) for i in range(top + 1)], True
        return sorted({str(x) for x in train.labels}), False

    @functools.cached_property
    def _ids(self) -> tuple[np.ndarray, np.ndarray]:
        names, as_int = self._classes
        train, test = self._rows
        if len({str(x) for x in train.labels}) < 2:
            raise UserError(
                f"{train.path}: field {self.config.label_field!r} has 1 class; need at least 2"
            )
        return _label_ids(train, names, as_int), _label_ids(test, names, as_int)

    def class_names(self) -> list[str]:
        _ = self._ids  # validates every label before a model is sized from the names
        return self._classes[0]

    @functools.cached_property
    def _split(self) -> tuple[np.ndarray, np.ndarray]:
        return _carve(self._ids[0], self.config)

    def sizes(self) -> tuple[int, int, int]:
        n_test = len(self._ids[1])
        train, validation = self._split
        return len(train), len(validation), min(self.config.test_examples or n_test, n_test)

    def _indices(self, part: str) -> tuple[_Rows, np.ndarray, np.ndarray]:
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


def _carve(labels: np.ndarray, config: TextClassificationConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) row indices: a seeded shuffle, subset, then the validation share."""
    order = np.random.default_rng(config.seed).permutation(len(labels))[: config.train_examples]
    share = config.validation_split
    if config.stratify:
        by_class = [order[labels[order] == c] for c in np.unique(labels[order])]
        validation = np.concatenate([rows[: round(len(rows) * share)] for rows in by_class])
    else:
        validation = order[: max(1, round(len(order) * share))]
    if len(validation) == 0:
        raise UserError(f"data.validation_split={share} leaves no validation example in any class")
    # Keep the shuffled order (not class-sorted) so a small shuffle buffer still mixes classes.
    return order[~np.isin(order, validation)], validation


def _is_int_label(label: int | str) -> bool:
    # CSV stores every label as a string, so "3" is a class id like JSON's 3.
    return isinstance(label, int) or bool(_INT_LABEL.fullmatch(label))


def _label_ids(rows: _Rows, names: list[str], as_int: bool) -> np.ndarray:
    index = {name: i for i, name in enumerate(names)}
    ids = []
    for line, label in zip(rows.lines, rows.labels, strict=True):
        key = str(int(label)) if as_int else str(label)
        if key not in index:
            why = "is negative" if as_int else f"is not a class of the train file ({names})"
            raise UserError(f"{rows.path}: line {line}: label {label!r} {why}")
        ids.append(index[key])
    return np.array(ids, dtype=np.int64)


def _read_rows(path: Path, text_field: str, label_field: str) -> _Rows:
    """Every example of a CSV/JSONL file; UserError naming the file and line otherwise."""
    if not path.is_file():
        raise UserError(f"{path}: no such file (data.files)")
    records = _csv_records(path) if _file_format(path.name) == "csv" else _jsonl_records(path)
    rows = _Rows(path, [], [], [])
    for line, record in records:
        text, label = _example(path, line, record, text_field, label_field)
        rows.lines.append(line)
        rows.texts.append(text)
        rows.labels.append(label)
    if not rows.texts:
        raise UserError(f"{path}: no examples")
    return rows


def _lines(path: Path) -> Iterator[str]:
    """Decoded lines of a UTF-8 file, gunzipped when it ends in .gz."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    line = 0
    try:
        with opener(path, "rb") as f:
            for line, raw in enumerate(f, 1):
                yield raw.decode("utf-8-sig" if line == 1 else "utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: line {line}: not UTF-8 text ({e.reason})") from None
    except (OSError, EOFError, zlib.error) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path}: corrupt or truncated after line {line} ({reason})") from None


def _jsonl_records(path: Path) -> Iterator[tuple[int, Any]]:
    for line, text in enumerate(_lines(path), 1):
        if not text.strip():  # a blank line (e.g. a trailing newline) is not an example
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: line {line}: not valid JSON ({e.msg})") from None
        yield line, record


def _csv_records(path: Path) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(_lines(path))
    try:
        if reader.fieldnames is None:
            return
        for record in reader:
            yield reader.line_num, record
    except csv.Error as e:
        raise UserError(f"{path}: line {reader.line_num}: not valid CSV ({e})") from None


def _example(
    path: Path, line: int, record: Any, text_field: str, label_field: str
) -> tuple[str, int | str]:
    where = f"{path}: line {line}"
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(record).__name__}")
    text, label = record.get(text_field), record.get(label_field)
    if text_field not in record or label_field not in record:
        missing = text_field if text_field not in record else label_field
        raise UserError(f"{where}: no field {missing!r} (has: {', '.join(map(str, record))})")
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"{where}: empty text in field {text_field!r}")
    if isinstance(label, bool) or not isinstance(label, int | str) or str(label).strip() == "":
        raise UserError(f"{where}: label {label!r} in field {label_field!r} is not an int or name")
    return text, label
