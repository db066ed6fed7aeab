"""The pipeline interface: a job's `data:` section -> tf.data datasets for one trial."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, PositiveInt

from harness_core.schema import NumbersNotBooleans

# The options that name a user's files or folders (a path, a list or a mapping of paths).
SOURCE_KEYS = ("arrays", "folder", "path", "files")


def _strings(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _strings(item, out)
    elif isinstance(value, list | tuple):
        for item in value:
            _strings(item, out)


def default_cache(directory: Path) -> Path:
    """`directory` for a default cache (next to the data) when this user may write there, else
    the user's own cache folder ($XDG_CACHE_HOME or ~/.cache, then harness/): data on a
    read-only mount or in another user's folder still trains. Cache entries are keyed by the
    data's identity, so one user folder serves every dataset."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if os.access(existing, os.W_OK | os.X_OK):
        return directory
    home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(home).expanduser() / "harness"


def content_digest(path: Path) -> str:
    """sha256 of a file's bytes; for a folder, of its files' relative paths, sizes and
    modification times (reading every image of a large folder would slow each start), hidden
    entries (caches) left out; "missing" when there is nothing there."""
    digest = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    elif path.is_dir():
        for item in sorted(path.rglob("*")):
            relative = item.relative_to(path)
            if item.is_file() and not any(p.startswith(".") for p in relative.parts):
                stat = item.stat()
                digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    else:
        return "missing"
    return f"sha256:{digest.hexdigest()[:16]}"


class PipelineConfig(NumbersNotBooleans):
    """Options shared by all pipelines; each pipeline's `Config` subclasses this."""

    model_config = ConfigDict(extra="allow")
    pipeline: str

    def source_paths(self) -> list[str]:
        """The files and folders the data is read from: the paths under `arrays`, `folder`,
        `path`, `files`. A TFDS dataset has none (its name, version and data dir say what it
        is)."""
        options = self.model_dump()
        paths: list[str] = []
        for key in SOURCE_KEYS:
            _strings(options.get(key), paths)
        return paths

    def source_contents(self) -> dict[str, str]:
        """A digest of each source path, by path: a resume checks them unchanged."""
        return {path: content_digest(Path(path).expanduser()) for path in self.source_paths()}

    def missing_sources(self) -> list[str]:
        """The source paths that are not there (a look, no read)."""
        return [p for p in self.source_paths() if not Path(p).expanduser().exists()]

    def fingerprint(self) -> str:
        """Hash of every option that changes the produced data."""
        options = self.model_dump(exclude={"data_dir", "download"})
        blob = json.dumps(options, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def source(self) -> str:
        """What the data is, for people (the job's header line): the dataset name, else the
        file or folder given. Pipelines with other sources override it."""
        for key in ("dataset", *SOURCE_KEYS):
            value = getattr(self, key, None)
            if value:
                return str(value) if key == "dataset" else f"{key} {value}"
        return self.pipeline


class TrainingOrderConfig(PipelineConfig):
    """The options of `for_training`, the order every pipeline's training data takes."""

    batch_size: PositiveInt = 64
    shuffle_buffer: PositiveInt = 10_000
    seed: int = 0
    deterministic: bool = False


class LabelledSplitsConfig(TrainingOrderConfig):
    """Classification from a train and a test split: validation is held out of train
    (`split_indices`), and `train_examples`/`test_examples` take subsets for quick runs."""

    validation_split: float = Field(0.1, gt=0.0, lt=1.0)
    stratify: bool = False
    train_examples: PositiveInt | None = None
    test_examples: PositiveInt | None = None
    cache: Literal["memory", "none"] = "memory"


def check_default_among_choices(name: str, default: Any, choices: list | None) -> None:
    """The one rule for a data option `name` tuned by `<name>_choices`: its own value is the
    default choice, so it must be one of them (raised as ValueError for pydantic to report)."""
    if choices and default not in choices:
        raise ValueError(
            f"{name}={default} is the default choice and must be one of {name}_choices {choices}"
        )


def declare_choice(hp: Any, name: str, default: Any, choices: list | None) -> None:
    """Declares the tuned data option `name` (checked by `check_default_among_choices`)."""
    if choices:
        hp.Choice(name, choices, default=default)


@dataclass
class DataMeta:
    """What a model needs to know about the data, cheap to compute (no data read)."""

    task: str
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: list[str]
    num_train: int
    num_validation: int
    num_test: int
    fingerprint: str
    extra: dict[str, Any] = field(default_factory=dict)
    # Scores of a trivial model on the test split, by baseline and metric (a language model's
    # {"unigram": {"bits_per_char": 4.4}}): what exported test metrics are read against.
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)


def subset_notes(config: PipelineConfig, meta: DataMeta) -> list[str]:
    """A line for each of `train_examples` (train + validation) and `test_examples` that the
    job set above what the data holds: the subset is then all of it, which the job may not
    expect. A default (a generator's count, "all if more" for its files) says nothing, also
    when a resumed job's job.json spells it out."""
    notes = []
    fields = type(config).model_fields
    for name, held in (
        ("train_examples", meta.num_train + meta.num_validation),
        ("test_examples", meta.num_test),
    ):
        asked = getattr(config, name, None)
        if name in fields and asked != fields[name].default and asked and asked > held:
            notes.append(f"data.{name}={asked} is more than the data holds; all {held} are used")
    return notes


@dataclass
class TrainData:
    """Datasets for one trial. `train` repeats forever; `steps_per_epoch` bounds an epoch.
    Both go to Keras without tf.data's autotuning thread (`without_autotune_thread`)."""

    train: Any
    validation: Any
    steps_per_epoch: int
    batch_size: int

    def __post_init__(self):
        self.train = without_autotune_thread(self.train)
        self.validation = without_autotune_thread(self.validation)


def without_autotune_thread(dataset: Any) -> Any:
    """`dataset` with tf.data's autotuning model off; applied to every dataset the harness
    gives Keras (a trial's train and validation data, an export's refit and test data).

    The model's thread sleeps between optimisations for a period that doubles up to 60 s.
    When the iterator is destroyed, as `fit` or `evaluate` returns, that thread can miss its
    wake-up: TensorFlow's CancellationManager runs the wake-up callback before it reports
    itself cancelled, so the thread may check, see "not cancelled" and sleep out its period,
    and the destruction waits for it. Measured here: up to 2 trials in 5 stalled 5 to 8 s after
    their last epoch. Without the model, parallel maps run on the trial's inter-op threads and
    `prefetch(AUTOTUNE)` still sizes its own buffer; epochs were as fast or faster
    (docs/BENCHMARKS.md, "The stall after `fit`")."""
    if dataset is None or not hasattr(dataset, "with_options"):
        return dataset
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def for_training(examples, config: Any, batch: int, after_batch=None, augment=None):
    """The canonical train order after the cache, used by every pipeline:
    shuffle -> repeat -> batch(drop_remainder) -> after_batch -> augment -> prefetch.

    `augment(images, seed)` works on whole batches (per-example maps cost more than the model
    step on small images), in parallel; batch i gets seed (config.seed, i), so a deterministic
    run repeats its augmentation too. The data options make the order deterministic when
    `config.deterministic`, and shard by element under multi-worker strategies whatever the
    number of source files.
    """
    import tensorflow as tf

    train = examples.shuffle(config.shuffle_buffer, seed=config.seed).repeat()
    train = train.batch(batch, drop_remainder=True)
    if after_batch is not None:
        train = train.map(after_batch, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:

        def apply(pair, index):
            seed = tf.stack([tf.constant(config.seed, tf.int64), index])
            return augment(pair[0], seed), pair[1]

        numbered = tf.data.Dataset.zip(train, tf.data.Dataset.counter())
        train = numbered.map(apply, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = config.deterministic
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return train.prefetch(tf.data.AUTOTUNE).with_options(options)


@dataclass
class Serving:
    """A serving signature: the raw-input spec, the function from raw inputs to outputs, and
    the objects holding state that function uses besides the model (e.g. a vocabulary table).
    `extra_specs` are further inputs after the first (a generator's length, temperature)."""

    input_spec: Any
    fn: Any
    tracked: list[Any] = field(default_factory=list)
    extra_specs: list[Any] = field(default_factory=list)

    @property
    def input_specs(self) -> list[Any]:
        return [self.input_spec, *self.extra_specs]


class Pipeline:
    """Lifecycle: `check_config` (static, at validation) -> `check_available` (driver, before
    any trial) -> `describe` -> `train_data` / `test_data` (in the trial's worker)."""

    Config: ClassVar[type[PipelineConfig]] = PipelineConfig
    task: ClassVar[str] = "generic"
    # Whether `train_and_validation_data` exists (export.retrain refits on it).
    supports_refit: ClassVar[bool] = False
    # Whether its served models convert to TFLite: not those that take raw strings in (TFLite's
    # converter has no string lookups; it failed at export, after the whole search).
    supports_tflite: ClassVar[bool] = True
    # Labelled example images in TensorBoard: the pipeline implements `example_batch`.
    shows_examples: ClassVar[bool] = False

    def __init__(self, config: PipelineConfig):
        self.config = config

    @classmethod
    def check_config(cls, config: PipelineConfig) -> None:
        """Raises UserError for option combinations the schema cannot express."""

    def global_batch(self, replicas: int) -> int:
        """The batch one training step consumes: `data.batch_size` is per replica, so a
        MirroredStrategy over `replicas` devices steps on that many times more."""
        return self.config.batch_size * replicas

    def check_available(self) -> None:
        """Raises UserError when the data cannot be read (e.g. no offline copy)."""

    def declare_hyperparameters(self, hp: Any) -> None:
        """Registers the data's tunable choices (e.g. sequence length) on a Keras Tuner
        `HyperParameters`, each with an explicit default; called before the search starts and
        again in each trial's worker, so `train_data(hp)` can read them with `hp.get`."""

    def describe(self, hp: Any = None) -> DataMeta:
        """The data as a model sees it, for `hp`'s data choices (defaults when None)."""
        raise NotImplementedError

    def train_data(self, hp: Any, replicas: int = 1) -> TrainData:
        raise NotImplementedError

    def train_and_validation_data(self, hp: Any = None, replicas: int = 1) -> TrainData:
        """Training batches over train + validation (no validation set), for `export.retrain`;
        a pipeline that provides it sets `supports_refit`."""
        raise NotImplementedError

    def serving(self, model: Any, hp: Any = None) -> Serving:
        """How an exported model takes raw inputs: float tensors of the data's shape here;
        pipelines with preprocessing (uint8 images, raw text) override this."""
        import tensorflow as tf

        meta = self.describe(hp)
        spec = tf.TensorSpec((None, *meta.input_shape), tf.float32, name="inputs")
        return Serving(spec, lambda x: {"outputs": model(x, training=False)})

    def test_data(self, batch_size: int = 256, hp: Any = None) -> Any:
        """Test batches, prepared with `hp`'s data choices; only used to score exports."""
        raise NotImplementedError

    def served_test_metrics(self, serving: Serving, hp: Any = None) -> dict[str, float]:
        """The export's test metrics through its serving signature, in the units its callers
        see: `{}` when those are the model's own (then `test_metrics` says it all); a pipeline
        whose signature maps the model's outputs (a forecaster's denormalised values) scores
        what a caller gets."""
        return {}

    def example_batch(self, data: TrainData, hp: Any = None) -> tuple[Any, Any, bool]:
        """A training batch to show in TensorBoard as labelled images: (images, labels,
        whether they are augmented). Called once per job (and augmentation) when the
        pipeline sets `shows_examples`."""
        raise NotImplementedError

    def example_inputs(self, count: int = 1) -> list[Any] | None:
        """A few raw test inputs as JSON values, in the serving signature's form, for an
        export's example request (`example_request.json`); None when a pipeline has none."""
        return None
