"""Time-series forecasting from a CSV file: sliding windows over chronological splits.

The series is split in time order into train | validation | test, and every window (its inputs
and the `horizon` steps after them) lies inside one split, so no split sees another's values.
Each column is normalized with the mean and std of the training range only.

An example is `(inputs, labels)`: inputs `(window, n_features)` float32, labels
`(horizon, n_targets)` float32, the normalized target columns at the `horizon` steps right after
the window. Labels keep the time and target axes apart so per-step and per-target metrics need no
reshape; a model that predicts a flat vector ends with one `Reshape`. `DataMeta.extra` holds
`mean`/`std` per column (of `columns`) and `target_indices` to map predictions back to units.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, Field, PositiveInt, model_validator

from harness_core.errors import UserError
from pipelines.base import (
    DataMeta,
    Pipeline,
    Serving,
    TrainData,
    TrainingOrderConfig,
    check_default_among_choices,
    declare_choice,
    for_training,
    without_autotune_thread,
)

SPLITS = ("train", "validation", "test")


class TimeSeriesConfig(TrainingOrderConfig):
    """The `data:` section of a time-series forecasting job."""

    model_config = ConfigDict(extra="forbid")
    pipeline: Literal["time_series"] = "time_series"
    path: str
    columns: list[str] | None = Field(None, min_length=1)
    targets: list[str] | None = Field(None, min_length=1)
    time_column: str | None = None
    window: PositiveInt = 24
    window_choices: list[PositiveInt] | None = Field(None, min_length=1)
    horizon: PositiveInt = 1
    stride: PositiveInt = 1
    # 70/20/10 as in the TensorFlow time-series tutorial.
    validation_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    batch_size: PositiveInt = 32
    cache: Literal["memory", "none"] = "memory"

    @model_validator(mode="after")
    def _check_combinations(self) -> TimeSeriesConfig:
        if self.validation_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"validation_fraction + test_fraction = "
                f"{self.validation_fraction + self.test_fraction:g} leaves no training data; "
                "it must be < 1"
            )
        check_default_among_choices("window", self.window, self.window_choices)
        _check_column_names(self)
        return self


def _check_column_names(config: TimeSeriesConfig) -> None:
    """The column-name rules that need no data: no repeats, the time column is no feature."""
    for key in ("columns", "targets"):
        names = getattr(config, key) or []
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"{key} lists {repeated[0]!r} more than once")
        if config.time_column in names:
            raise ValueError(f"time_column {config.time_column!r} cannot also be in {key}")
    if config.columns and config.targets:
        missing = [t for t in config.targets if t not in config.columns]
        if missing:
            raise ValueError(f"target {missing[0]!r} is not in columns {config.columns}")


@dataclass(frozen=True)
class Series:
    """A CSV's feature columns, normalized with the statistics of the training range."""

    values: np.ndarray  # (rows, n_features) float32, normalized
    columns: list[str]
    targets: list[str]
    target_indices: list[int]
    mean: np.ndarray
    std: np.ndarray
    bounds: dict[str, tuple[int, int]]  # split -> [start, stop) rows


def load_series(config: TimeSeriesConfig) -> Series:
    """Reads and checks the CSV, splits it and fits the normalization on the training range.

    Raises:
        UserError: one line naming the file and the first problem found.
    """
    header, rows, lines = _read_csv(config.path)
    _check_known_columns(config, header)
    columns = _feature_columns(config, header, rows[0])
    targets = config.targets or columns
    _check_targets(config.path, targets, columns)
    table = dict(zip(header, zip(*rows, strict=True), strict=True))
    if config.time_column:
        _check_time_order(config.path, config.time_column, table[config.time_column], lines)
    raw = np.stack([_parse_column(config.path, c, table[c], lines) for c in columns], axis=1)
    bounds = split_bounds(len(rows), config.validation_fraction, config.test_fraction)
    # The longest window candidate is the one that needs the most rows and gives fewest windows.
    check_lengths(config, bounds, max([config.window, *(config.window_choices or [])]))
    mean, std = _fit_normalization(raw[: bounds["train"][1]])
    values = ((raw - mean) / std).astype(np.float32)
    indices = [columns.index(t) for t in targets]
    return Series(values, columns, list(targets), indices, mean, std, bounds)


def _read_csv(path: str) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, data rows and each row's line number in the file (the header is line 1)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"data.path {path!r}: no such file")
    try:
        # utf-8-sig: spreadsheet exports often start with a byte-order mark.
        with file.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [name.strip() for name in next(reader, [])]
            numbered = [(row, reader.line_num) for row in reader if row]  # skip blank lines
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"data.path {path!r}: cannot read the file: {e}") from None
    _check_shape(path, header, numbered)
    return header, [row for row, _ in numbered], [line for _, line in numbered]


def _check_shape(path: str, header: list[str], numbered: list[tuple[list[str], int]]) -> None:
    if not header:
        raise UserError(f"data.path {path!r}: the file is empty; it needs a header row")
    if "" in header:
        raise UserError(
            f"data.path {path!r}: column {header.index('') + 1} of the header has no name "
            "(a pandas index? write the file with index=False, or name the column)"
        )
    repeated = sorted({n for n in header if header.count(n) > 1})
    if repeated:
        raise UserError(f"data.path {path!r}: the header names column {repeated[0]!r} twice")
    if not numbered:
        raise UserError(f"data.path {path!r}: the file has a header but no data rows")
    for row, line in numbered:
        if len(row) != len(header):
            raise UserError(
                f"data.path {path!r}: line {line} has {len(row)} fields but the header has "
                f"{len(header)}"
            )


def _check_known_columns(config: TimeSeriesConfig, header: list[str]) -> None:
    time = [config.time_column] if config.time_column else []
    for key, names in (
        ("columns", config.columns),
        ("targets", config.targets),
        ("time_column", time),
    ):
        unknown = [n for n in names or [] if n not in header]
        if unknown:
            raise UserError(
                f"data.path {config.path!r}: unknown column {unknown[0]!r} in data.{key}; "
                f"available: {', '.join(header)}"
            )


def _feature_columns(config: TimeSeriesConfig, header: list[str], first: list[str]) -> list[str]:
    """`data.columns`, or every numeric column but the time column.

    A column counts as numeric when its first row holds a number or nothing (an empty or NaN
    first cell then fails loudly in parsing rather than silently dropping the column).
    """
    if config.columns:
        return list(config.columns)
    numeric = [
        name
        for name, cell in zip(header, first, strict=True)
        if name != config.time_column and _numeric_or_blank(cell)
    ]
    if not numeric:
        raise UserError(f"data.path {config.path!r}: no numeric columns among {', '.join(header)}")
    return numeric


def _numeric_or_blank(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return not cell.strip()
    return True


def _check_targets(path: str, targets: list[str], columns: list[str]) -> None:
    missing = [t for t in targets if t not in columns]
    if missing:
        raise UserError(
            f"data.path {path!r}: target {missing[0]!r} is not a numeric feature column; "
            f"feature columns: {', '.join(columns)}"
        )


def _parse_column(path: str, name: str, cells: tuple[str, ...], lines: list[int]) -> np.ndarray:
    try:
        values = np.array([float(cell) for cell in cells])
    except ValueError:
        values = None
    if values is not None and np.isfinite(values).all():
        return values
    # Slow path only on failure: find the first bad cell to name it.
    for cell, line in zip(cells, lines, strict=True):
        problem = _cell_problem(cell)
        if problem:
            raise UserError(
                f"data.path {path!r}: column {name!r} has {problem} at line {line} "
                "(the first bad row); fill or remove it"
            )
    raise AssertionError("unreachable: a column failed to parse but every cell is fine")


def _cell_problem(cell: str) -> str | None:
    text = cell.strip()
    if not text:
        return "an empty cell"
    try:
        value = float(text)
    except ValueError:
        return f"a non-numeric value {text[:40]!r}"
    if math.isnan(value):
        return f"a NaN value {text!r}"
    return None if math.isfinite(value) else f"an infinite value {text!r}"


def _check_time_order(path: str, name: str, cells: tuple[str, ...], lines: list[int]) -> None:
    """The rows must be in time order: windows assume row i+1 follows row i."""
    parse = float if _numeric_or_blank(cells[0]) else datetime.fromisoformat
    previous, previous_cell = None, ""
    for cell, line in zip(cells, lines, strict=True):
        try:
            key = parse(cell.strip())
        except ValueError:
            raise UserError(
                f"data.path {path!r}: time column {name!r} has {cell[:40]!r} at line {line}; "
                "expected numbers or ISO 8601 times"
            ) from None
        if previous is not None and _zoned(key) != _zoned(previous):
            raise UserError(
                f"data.path {path!r}: time column {name!r} mixes times with and without a UTC "
                f"offset ({cell[:40]!r} at line {line} after {previous_cell[:40]!r})"
            )
        if previous is not None and not key > previous:
            raise UserError(
                f"data.path {path!r}: time column {name!r} is not increasing at line {line} "
                f"({cell[:40]!r} after {previous_cell[:40]!r}); sort the file by time"
            )
        previous, previous_cell = key, cell


def _zoned(key: float | datetime) -> bool:
    return isinstance(key, datetime) and key.tzinfo is not None


def split_bounds(rows: int, validation_fraction: float, test_fraction: float) -> dict:
    """Row ranges `[start, stop)` of train | validation | test, in time order."""
    n_val = round(rows * validation_fraction)
    n_test = round(rows * test_fraction)
    n_train = rows - n_val - n_test  # >= 0: the fractions sum to < 1
    return {
        "train": (0, n_train),
        "validation": (n_train, n_train + n_val),
        "test": (n_train + n_val, rows),
    }


def num_windows(length: int, window: int, horizon: int, stride: int) -> int:
    """How many windows (inputs plus horizon) fit in `length` rows, starting every `stride`."""
    span = window + horizon
    return 0 if length < span else (length - span) // stride + 1


def check_lengths(config: TimeSeriesConfig, bounds: dict, window: int) -> None:
    """Every split must hold one window; the train split one batch of windows."""
    need = window + config.horizon
    for split in SPLITS:
        start, stop = bounds[split]
        if stop - start < need:
            raise UserError(
                f"data.path {config.path!r}: the {split} split has {stop - start} rows but "
                f"window {window} + horizon {config.horizon} needs at least {need}; use a longer "
                "series, a smaller window or horizon, or other split fractions"
            )
    start, stop = bounds["train"]
    n = num_windows(stop - start, window, config.horizon, config.stride)
    if n < config.batch_size:
        raise UserError(
            f"data.path {config.path!r}: the train split gives {n} windows (window {window}), "
            f"fewer than data.batch_size={config.batch_size}"
        )


def _fit_normalization(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(axis=0), train.std(axis=0)
    # A column constant over the training range would divide by zero; centring it is enough.
    return mean, np.where(std > 0, std, 1.0)


class TimeSeriesPipeline(Pipeline):
    """CSV rows -> windows per split -> cache -> shuffle -> repeat -> batch -> prefetch.

    With `window_choices`, the window length is the hyperparameter `window`.
    """

    Config = TimeSeriesConfig
    task = "time_series_forecast"
    config: TimeSeriesConfig

    def __init__(self, config: TimeSeriesConfig):
        super().__init__(config)
        self._loaded: Series | None = None
        # The window of the last describe/train_data: `test_data` has no hp (the exporter calls
        # `describe(hp)` then `test_data()`), so it reuses this one.
        self._window = config.window

    def check_available(self) -> None:
        self._series()

    def _series(self) -> Series:
        if self._loaded is None:
            self._loaded = load_series(self.config)
        return self._loaded

    def declare_hyperparameters(self, hp: Any) -> None:
        declare_choice(hp, "window", self.config.window, self.config.window_choices)

    def _select_window(self, hp: Any) -> int:
        """The window for `hp` (config.window when not tuned); remembered for `test_data`."""
        window = self.config.window
        if self.config.window_choices and hp is not None and "window" in hp:
            window = hp.get("window")
        # Checked again here: `search_space.fixed` may pin a window outside window_choices.
        check_lengths(self.config, self._series().bounds, window)
        self._window = window
        return window

    def _count(self, split: str, window: int) -> int:
        start, stop = self._series().bounds[split]
        return num_windows(stop - start, window, self.config.horizon, self.config.stride)

    def describe(self, hp: Any = None) -> DataMeta:
        series = self._series()
        window = self._select_window(hp)
        n_train, n_val, n_test = (self._count(split, window) for split in SPLITS)
        return DataMeta(
            task=self.task,
            input_shape=(window, len(series.columns)),
            num_classes=0,
            class_names=[],
            num_train=n_train,
            num_validation=n_val,
            num_test=n_test,
            fingerprint=self.config.fingerprint(),
            extra={
                "columns": list(series.columns),
                "mean": series.mean.tolist(),
                "std": series.std.tolist(),
                "targets": list(series.targets),
                "target_indices": list(series.target_indices),
                "window": window,
                "horizon": self.config.horizon,
            },
        )

    def _windows(self, split: str, window: int):
        """(inputs, labels) for every window of one split, in time order."""
        import tensorflow as tf

        series = self._series()
        start, stop = series.bounds[split]
        horizon = self.config.horizon
        # Only this split's rows are captured, so no window can reach into another split.
        inputs = tf.constant(series.values[start:stop])
        labels = tf.constant(series.values[start:stop, series.target_indices])
        firsts = np.arange(self._count(split, window), dtype=np.int32) * self.config.stride

        def cut(first):
            # Gather with a fixed-length range keeps the shapes static for Keras.
            return (
                tf.gather(inputs, first + tf.range(window)),
                tf.gather(labels, first + window + tf.range(horizon)),
            )

        return tf.data.Dataset.from_tensor_slices(firsts).map(
            cut, num_parallel_calls=tf.data.AUTOTUNE
        )

    def train_data(self, hp: Any = None, replicas: int = 1) -> TrainData:
        import tensorflow as tf

        window = self._select_window(hp)
        batch = self.global_batch(replicas)
        train = self._windows("train", window)
        # Cache after windowing: each epoch then reads ready windows, not gathers.
        if self.config.cache == "memory":
            train = train.cache()
        train = for_training(train, self.config, batch)
        validation = self._windows("validation", window).batch(batch).prefetch(tf.data.AUTOTUNE)
        steps = max(1, self._count("train", window) // batch)  # >= 1 even when replicas > 1
        return TrainData(train, validation, steps, batch)

    def serving(self, model: Any, hp: Any = None) -> Serving:
        """Raw values in the CSV's units in, a forecast in the targets' units out: the
        training range's mean/std are constants of the exported graph, so a caller never
        normalises anything. Input (batch, window, columns); output `forecast` (batch,
        horizon, targets)."""
        import tensorflow as tf

        meta = self.describe(hp)
        series = self._series()
        mean = tf.constant(series.mean, tf.float32)
        std = tf.constant(series.std, tf.float32)
        target_mean = tf.gather(mean, series.target_indices)
        target_std = tf.gather(std, series.target_indices)
        spec = tf.TensorSpec((None, *meta.input_shape), tf.float32, name="values")

        def forecast(values):
            predicted = model((values - mean) / std, training=False)
            return {"forecast": predicted * target_std + target_mean}

        return Serving(spec, forecast)

    def raw_test_windows(self, hp: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Every test window (count, window, columns) and the `horizon` rows of targets after
        it (count, horizon, targets), in time order and in the CSV's units: `test_data`'s
        windows (the ones `test_metrics` scores), with the normalisation undone."""
        series = self._series()
        batches = list(without_autotune_thread(self.test_data(hp=hp)).as_numpy_iterator())
        inputs = np.concatenate([x for x, _ in batches]) * series.std + series.mean
        targets = np.concatenate([y for _, y in batches])
        targets = targets * series.std[series.target_indices] + series.mean[series.target_indices]
        return inputs.astype(np.float32), targets.astype(np.float32)

    def served_test_metrics(self, serving: Serving, hp: Any = None) -> dict[str, float]:
        """Mean absolute error of the served forecasts in the targets' units, over all test
        windows: overall, and per target when there are several."""
        import tensorflow as tf

        inputs, targets = self.raw_test_windows(hp)
        forecasts = np.concatenate(
            [
                serving.fn(tf.constant(inputs[i : i + 256]))["forecast"].numpy()
                for i in range(0, len(inputs), 256)
            ]
        )
        errors = np.abs(forecasts - targets)
        metrics = {"mae": float(errors.mean())}
        names = self._series().targets
        if len(names) > 1:
            metrics |= {f"mae_{name}": float(errors[..., i].mean()) for i, name in enumerate(names)}
        return metrics

    def example_inputs(self, count: int = 1) -> list[Any]:
        """The first test windows, in the CSV's units (what the exported model takes)."""
        return self.raw_test_windows()[0][:count].astype(np.float64).round(6).tolist()

    def test_data(self, batch_size: int = 256, hp: Any = None):
        """Test windows in time order; the window is `hp`'s, else the last one described."""
        import tensorflow as tf

        window = self._select_window(hp) if hp is not None else self._window
        return self._windows("test", window).batch(batch_size).prefetch(tf.data.AUTOTUNE)
