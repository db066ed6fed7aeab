"""Time-series pipeline over small CSVs: window alignment, splits, normalization, bad input."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import keras_tuner as kt
import numpy as np
import pytest
from pydantic import ValidationError

from harness.errors import UserError
from harness.job import validate_job
from pipelines.timeseries import TimeSeriesConfig, TimeSeriesPipeline
from tests.conftest import tiny_job

ROWS = 300  # 0.2 / 0.1 fractions: train rows 0..209, validation 210..269, test 270..299
BOUNDS = {"train": (0, 210), "validation": (210, 270), "test": (270, 300)}


def write_csv(path: Path, columns: dict[str, list]) -> Path:
    lines = [",".join(columns)]
    lines += [",".join(str(v) for v in row) for row in zip(*columns.values(), strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def ramp(tmp_path: Path, rows: int = ROWS) -> Path:
    """`a[t] = t` and `b[t] = 2t + 1`: every value tells its row."""
    t = np.arange(rows)
    return write_csv(tmp_path / "ramp.csv", {"a": t.tolist(), "b": (2 * t + 1).tolist()})


def make(path: Path, **options) -> TimeSeriesPipeline:
    options = {"window": 10, "horizon": 5, "batch_size": 8, **options}
    return TimeSeriesPipeline(TimeSeriesConfig(path=str(path), **options))


def rows_of(pipeline: TimeSeriesPipeline, x: np.ndarray, column: int = 0) -> np.ndarray:
    """Undoes the normalization of one feature column with the stats in DataMeta.extra."""
    extra = pipeline.describe().extra
    return x[..., column] * extra["std"][column] + extra["mean"][column]


def unbatch(dataset) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(x.numpy(), y.numpy()) for x, y in dataset]
    return np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs])


def expected_windows(length: int, window: int = 10, horizon: int = 5, stride: int = 1) -> int:
    return (length - window - horizon) // stride + 1


def test_first_window_and_its_label_follow_the_series(tmp_path):
    pipeline = make(ramp(tmp_path), targets=["b"], shuffle_buffer=1, horizon=3, deterministic=True)
    x, y = next(iter(pipeline.train_data().train))
    assert x.shape == (8, 10, 2) and y.shape == (8, 3, 1) and x.dtype.name == "float32"
    extra = pipeline.describe().extra
    np.testing.assert_allclose(rows_of(pipeline, x.numpy()[0]), np.arange(10), atol=1e-3)
    labels = y.numpy()[0, :, 0] * extra["std"][1] + extra["mean"][1]
    np.testing.assert_allclose(labels, 2 * np.arange(10, 13) + 1, atol=1e-3)
    assert extra["targets"] == ["b"] and extra["target_indices"] == [1]
    assert (extra["window"], extra["horizon"], extra["columns"]) == (10, 3, ["a", "b"])


def test_window_counts_per_split_follow_the_formula(tmp_path):
    meta = make(ramp(tmp_path)).describe()
    assert (meta.num_train, meta.num_validation, meta.num_test) == (196, 46, 16)
    assert meta.input_shape == (10, 2) and meta.num_classes == 0 and meta.class_names == []
    assert meta.task == "time_series_forecast"


@pytest.mark.parametrize("split", ["validation", "test"])
def test_eval_windows_stay_inside_their_split(tmp_path, split):
    pipeline = make(ramp(tmp_path))
    data = pipeline.train_data() if split == "validation" else pipeline.test_data(16)
    dataset = data.validation if split == "validation" else data
    x, y = unbatch(dataset)
    start, stop = BOUNDS[split]
    inputs, labels = rows_of(pipeline, x), rows_of(pipeline, y)
    assert len(x) == expected_windows(stop - start)
    np.testing.assert_allclose(inputs[0], np.arange(start, start + 10), atol=1e-3)
    assert inputs.min() > start - 0.5 and labels.max() < stop - 0.5


def test_one_train_epoch_is_every_train_window_once(tmp_path):
    pipeline = make(ramp(tmp_path), batch_size=1, deterministic=True)
    data = pipeline.train_data()
    x, y = unbatch(data.train.take(data.steps_per_epoch))
    firsts = np.round(rows_of(pipeline, x[:, 0])).astype(int)
    assert sorted(firsts.tolist()) == list(range(196))
    assert rows_of(pipeline, y).max() < 210 - 0.5  # no label reaches into validation
    assert firsts[:5].tolist() != [0, 1, 2, 3, 4]  # shuffled


def test_normalization_is_fitted_on_the_train_range_only(tmp_path):
    pipeline = make(ramp(tmp_path), batch_size=1)
    extra = pipeline.describe().extra
    train_a = np.arange(210)
    assert extra["mean"][0] == pytest.approx(train_a.mean())  # 104.5, not the series' 149.5
    assert extra["std"][0] == pytest.approx(train_a.std())
    data = pipeline.train_data()
    x, _ = unbatch(data.train.take(data.steps_per_epoch))
    assert abs(float(x.mean())) < 0.1
    val_x, _ = unbatch(data.validation)
    assert float(val_x.mean()) > 1.0  # the trend goes on past the training range


def test_constant_column_is_centred_not_divided_by_zero(tmp_path):
    t = np.arange(ROWS)
    path = write_csv(tmp_path / "c.csv", {"a": t.tolist(), "flat": [5] * ROWS})
    meta = make(path).describe()
    assert meta.extra["std"][1] == 1.0
    x, _ = next(iter(make(path).train_data().train))
    assert np.isfinite(x.numpy()).all()


def test_stride_skips_window_starts(tmp_path):
    pipeline = make(ramp(tmp_path), stride=3)
    meta = pipeline.describe()
    assert meta.num_train == expected_windows(210, stride=3) == 66
    assert meta.num_validation == expected_windows(60, stride=3)
    x, _ = unbatch(pipeline.train_data().validation)
    np.testing.assert_allclose(rows_of(pipeline, x[:3, 0]), [210, 213, 216], atol=1e-3)


def test_replicas_scale_the_global_batch(tmp_path):
    data = make(ramp(tmp_path)).train_data(replicas=2)
    x, y = next(iter(data.train))
    assert data.batch_size == 16 and x.shape == (16, 10, 2) and y.shape == (16, 5, 2)
    assert data.steps_per_epoch == 196 // 16


def test_window_choices_make_window_a_hyperparameter(tmp_path):
    pipeline = make(ramp(tmp_path), window_choices=[10, 20])
    hp = kt.HyperParameters()
    pipeline.declare_hyperparameters(hp)
    assert hp.get("window") == 10  # the default is config.window
    hp.values["window"] = 20
    meta = pipeline.describe(hp)
    assert meta.input_shape == (20, 2) and meta.num_train == expected_windows(210, window=20)
    assert next(iter(pipeline.train_data(hp).train))[0].shape == (8, 20, 2)
    # The exporter calls describe(hp) and then test_data() without hp.
    assert next(iter(pipeline.test_data()))[0].shape[1] == 20


def test_fixed_window_declares_no_hyperparameter(tmp_path):
    hp = kt.HyperParameters()
    make(ramp(tmp_path)).declare_hyperparameters(hp)
    assert hp.space == []


def test_default_columns_skip_the_time_and_text_columns(tmp_path):
    days = [f"2024-01-01T{h // 60:02d}:{h % 60:02d}" for h in range(ROWS)]
    t = np.arange(ROWS)
    columns = {"when": days, "load": t.tolist(), "site": ["north"] * ROWS, "temp": t.tolist()}
    pipeline = make(write_csv(tmp_path / "d.csv", columns), time_column="when")
    pipeline.check_available()
    assert pipeline.describe().extra["columns"] == ["load", "temp"]


def test_validate_job_accepts_a_time_series_data_section(tmp_path):
    job = tiny_job(tmp_path)
    job["data"] = {"pipeline": "time_series", "path": str(ramp(tmp_path)), "window": 10}
    assert validate_job(job, cross_check=False).data.window == 10


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"validation_fraction": 0.6, "test_fraction": 0.4}, "leaves no training data"),
        ({"window": 12, "window_choices": [10, 20]}, "must be one of window_choices"),
        ({"time_column": "a", "columns": ["a", "b"]}, "cannot also be in columns"),
        ({"columns": ["a"], "targets": ["b"]}, "'b' is not in columns"),
        ({"columns": ["a", "a"]}, "'a' more than once"),
    ],
)
def test_bad_option_combinations_fail_validation(tmp_path, options, message):
    with pytest.raises(ValidationError, match=message):
        TimeSeriesConfig(path="x.csv", **options)
    job = tiny_job(tmp_path)
    job["data"] = {"pipeline": "time_series", "path": "x.csv", **options}
    with pytest.raises(UserError, match=message) as caught:
        validate_job(job, cross_check=False)
    assert "\n" not in str(caught.value)


def bad_csv(tmp_path: Path, case: str) -> Path:
    """A CSV with one defect at data row 6 (line 7 of the file)."""
    t = np.arange(ROWS)
    a, b = [str(v) for v in t], [str(v) for v in np.sin(t / 8) + 0.05 * t]
    if case in ("empty", "nan", "text"):
        b[5] = {"empty": "", "nan": "nan", "text": "n/a"}[case]
    return write_csv(tmp_path / f"{case}.csv", {"a": a, "b": b})


@pytest.mark.parametrize(
    ("case", "options", "fragments"),
    [
        ("missing", {}, ["no such file"]),
        ("ok", {"columns": ["a", "c"]}, ["unknown column 'c' in data.columns", "available: a, b"]),
        ("ok", {"targets": ["z"]}, ["unknown column 'z' in data.targets"]),
        ("ok", {"time_column": "when"}, ["unknown column 'when' in data.time_column"]),
        ("empty", {}, ["column 'b' has an empty cell at line 7"]),
        ("nan", {}, ["column 'b' has a NaN value 'nan' at line 7"]),
        ("text", {"columns": ["a", "b"]}, ["column 'b' has a non-numeric value 'n/a' at line 7"]),
        ("ok", {"window": 40, "horizon": 10}, ["the test split has 30 rows", "at least 50"]),
        ("ok", {"window_choices": [10, 60]}, ["the validation split has 60 rows", "at least 65"]),
        ("ok", {"batch_size": 500}, ["196 windows", "fewer than data.batch_size=500"]),
    ],
)
def test_bad_input_is_one_line_naming_the_file(tmp_path, case, options, fragments):
    path = tmp_path / "missing.csv" if case == "missing" else bad_csv(tmp_path, case)
    with pytest.raises(UserError) as caught:
        make(path, **options).check_available()
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_describe_first_reports_bad_input_too(tmp_path):
    with pytest.raises(UserError, match="has an empty cell at line 7"):
        make(bad_csv(tmp_path, "empty")).describe()


def test_unsorted_time_column_is_an_error(tmp_path):
    t = np.arange(ROWS)
    when = t.copy()
    when[[100, 101]] = when[[101, 100]]
    path = write_csv(tmp_path / "u.csv", {"when": when.tolist(), "a": t.tolist()})
    with pytest.raises(UserError, match="'when' is not increasing at line 103"):
        make(path, time_column="when").check_available()


def test_times_with_and_without_an_offset_are_one_line_not_a_crash(tmp_path):
    start = datetime(2024, 3, 1)
    when = [(start + timedelta(hours=i)).isoformat() for i in range(ROWS)]
    when[7] += "+00:00"  # Python refuses to order the two kinds (a TypeError before)
    path = write_csv(tmp_path / "z.csv", {"when": when, "a": list(range(ROWS))})
    with pytest.raises(UserError) as caught:
        make(path, time_column="when").check_available()
    assert str(caught.value) == (
        f"data.path {str(path)!r}: time column 'when' mixes times with and without a UTC "
        "offset ('2024-03-01T07:00:00+00:00' at line 9 after '2024-03-01T06:00:00')"
    )


def test_a_column_without_a_name_is_refused(tmp_path):
    """pandas' `to_csv()` writes its index as a first column named "": read, it would become
    a feature (and a target) made of row numbers."""
    t = list(range(ROWS))
    path = write_csv(tmp_path / "p.csv", {"": t, "a": t})
    with pytest.raises(UserError) as caught:
        make(path).check_available()
    assert str(caught.value) == (
        f"data.path {str(path)!r}: column 1 of the header has no name (a pandas index? write "
        "the file with index=False, or name the column)"
    )
