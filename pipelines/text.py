"""Text classification from a TFDS (text, label) dataset (imdb_reviews, ...) or user CSV/JSONL.

Raw text -> `StandardizeText` (HTML tags, case, punctuation) -> `TextVectorization` token ids
(0 = padding/mask, 1 = out-of-vocabulary). With `ngrams: 2` the tokens are a text's words
followed by its word pairs (TextVectorization's ngrams: all unigrams first, then all bigrams, so
a `sequence_length` under twice the text's length cuts bigrams first). The vocabulary is adapted
on the training split only and cached on disk (`pipelines.text_vocab`); `cache_dir` defaults to
`<data_dir>/harness_cache` (TFDS) or `.harness_cache/` next to the train file, or where this
user may not write there, `~/.cache/harness` (`$XDG_CACHE_HOME`).

The pieces, one per module: this one holds the job's `data:` schema and the pipeline;
`text_sources` reads and splits the examples (`text_files` parses user files), `text_vocab`
caches vocabularies and builds the vectorizer, `text_standardize` is the Keras-registered
standardization. Importing this module imports no TensorFlow, so validating a job is quick.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Field, PositiveInt, field_validator, model_validator

from harness_core.errors import UserError
from harness_core.schema import NumbersNotBooleans
from pipelines import tfds_source
from pipelines.base import (
    DataMeta,
    LabelledSplitsConfig,
    Pipeline,
    Serving,
    TrainData,
    check_default_among_choices,
    declare_choice,
    default_cache,
    for_training,
)
from pipelines.text_files import file_format
from pipelines.text_sources import FileTexts, TfdsTexts
from pipelines.text_vocab import RESERVED_TOKENS, VECTORIZE_BATCH, VocabularyCache

if TYPE_CHECKING:  # type names only: importing Keras here would cost validation seconds
    import keras

    from pipelines.text_standardize import StandardizeText

_FILES_ONLY = ("text_field", "label_field", "stratify")
_TUNABLE = ("vocab_size", "sequence_length", "ngrams")  # each with `<name>_choices`


class TextFiles(NumbersNotBooleans):
    """User files, one example per JSONL line or CSV row (`.gz` allowed)."""

    model_config = ConfigDict(extra="forbid")
    train: str
    test: str

    @field_validator("train", "test")
    @classmethod
    def _known_format(cls, path: str) -> str:
        if file_format(path) is None:
            raise ValueError("must end in .csv or .jsonl (optionally followed by .gz)")
        return path


class TextClassificationConfig(LabelledSplitsConfig):
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
    vocab_size: int = Field(10_000, ge=RESERVED_TOKENS + 1)
    sequence_length: PositiveInt = 256
    vocab_size_choices: list[Annotated[int, Field(ge=RESERVED_TOKENS + 1)]] | None = Field(
        None, min_length=1
    )
    sequence_length_choices: list[PositiveInt] | None = Field(None, min_length=1)
    ngrams: Literal[1, 2] = 1
    ngrams_choices: list[Literal[1, 2]] | None = Field(None, min_length=1)
    cache_dir: str | None = None
    validation_split: float = Field(0.2, gt=0.0, lt=1.0)

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
            check_default_among_choices(name, getattr(self, name), getattr(self, f"{name}_choices"))
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


class TextClassificationPipeline(Pipeline):
    """Text -> vectorize (per batch) -> cache -> shuffle -> repeat -> batch -> prefetch.

    Token ids come out of the pipeline (the vectorizer is not a model layer during tuning, so
    it runs once per example, not once per epoch). `vectorizer()` gives the same adapted layer
    to an exporter that puts it in front of the model so the exported model takes raw strings.
    """

    supports_refit = True
    supports_tflite = False  # raw strings in

    Config = TextClassificationConfig
    task = "text_classification"
    config: TextClassificationConfig

    def __init__(self, config: TextClassificationConfig):
        super().__init__(config)
        self.source = TfdsTexts(config) if config.dataset else FileTexts(config)

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
            declare_choice(
                hp, name, getattr(self.config, name), getattr(self.config, f"{name}_choices")
            )

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
        return self.vocabularies.standardize()

    def vectorizer(self, hp: Any = None) -> keras.layers.TextVectorization:
        """A `TextVectorization` layer with the training split's vocabulary (from the cache,
        adapting first on a miss): raw strings -> int ids, padded with 0 to sequence_length."""
        vocab_size, sequence_length = self._sizes(hp)
        ngrams = self._choice(hp, "ngrams")
        return self.vocabularies.vectorizer(vocab_size, sequence_length, ngrams)

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
        return self.vocabularies.path(self._sizes(hp)[0], self._choice(hp, "ngrams"))

    @functools.cached_property
    def vocabularies(self) -> VocabularyCache:
        """The vocabulary cache of this source and standardization."""
        c = self.config
        return VocabularyCache(self.source, self._cache_dir(), c.lowercase, c.strip_html)

    def _cache_dir(self) -> Path:
        if self.config.cache_dir:
            return Path(self.config.cache_dir).expanduser().resolve()
        return default_cache(self.source.default_cache_dir())

    def _vectorized(self, ds, vectorizer: keras.layers.TextVectorization):
        import tensorflow as tf

        # Vectorize a batch at a time (one op launch per 512 texts, not per text), then unbatch
        # so the cache holds examples and the train batches are drawn from shuffled examples.
        return (
            ds.batch(VECTORIZE_BATCH)
            .map(lambda text, label: (vectorizer(text), label), num_parallel_calls=tf.data.AUTOTUNE)
            .unbatch()
        )

    def train_data(self, hp: Any = None, replicas: int = 1) -> TrainData:
        """Repeating shuffled train batches of (ids, label) and one pass of validation."""

        n_train, _, _ = self._split_sizes()
        batch = self.global_batch(replicas)
        vectorizer = self.vectorizer(hp)
        train = self._vectorized(self.source.raw("train"), vectorizer)
        # Cache after vectorizing: standardizing and looking up tokens dominates the step.
        if self.config.cache == "memory":
            train = train.cache()
        train = for_training(train, self.config, batch)
        validation = self._eval_dataset(
            self.source.raw("validation"), batch, vectorizer, self._split_sizes()[1]
        )
        return TrainData(train, validation, max(1, n_train // batch), batch)

    def train_and_validation_data(self, hp: Any = None, replicas: int = 1) -> TrainData:
        """Training batches over train + validation, for refitting the chosen configuration.
        The vocabulary stays the one adapted on the training split (what the trial used)."""
        n_train, n_validation, _ = self._split_sizes()
        batch = self.global_batch(replicas)
        raw = self.source.raw("train").concatenate(self.source.raw("validation"))
        examples = self._vectorized(raw, self.vectorizer(hp))
        if self.config.cache == "memory":
            examples = examples.cache()
        train = for_training(examples, self.config, batch)
        return TrainData(train, None, max(1, (n_train + n_validation) // batch), batch)

    def _eval_dataset(self, ds, batch: int, vectorizer=None, count: int | None = None):
        import tensorflow as tf

        if vectorizer is not None:
            ds = self._vectorized(ds, vectorizer)
            # Unbatching loses the count, and Keras (3.15) warns "Your input ran out of data"
            # at the end of every evaluation of a dataset whose length it does not know.
            ds = ds.apply(tf.data.experimental.assert_cardinality(count))
        if self.config.cache == "memory":
            ds = ds.cache()
        return ds.batch(batch).prefetch(tf.data.AUTOTUNE)

    def test_data(self, batch_size: int = 256, hp: Any = None):
        """Test batches of (ids, label), vectorized like training data for `hp`."""
        n_test = self._split_sizes()[2]
        return self._eval_dataset(self.source.raw("test"), batch_size, self.vectorizer(hp), n_test)

    def example_inputs(self, count: int = 1) -> list[Any]:
        """The first test texts, as the raw strings the exported model takes."""
        return [text.numpy().decode() for text, _ in self.source.raw("test").take(count)]

    def raw_test_data(self, batch_size: int = 256):
        """Test batches of (raw string, label), for a model that has the vectorizer inside."""
        return self._eval_dataset(self.source.raw("test"), batch_size)
