"""Sequence classification data: (N, L) and (N, L, C) float arrays, stratified validation,
training statistics for the model's normalisation, and a one-line error for each bad file."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import UserError
from pipelines.sequence import SequenceClassificationConfig, SequenceClassificationPipeline


def write(path, n=200, shape=(16,), classes=3, **replace):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.normal(5.0, 2.0, (n, *shape)).astype(np.float32),
        "y_train": np.arange(n) % classes,
        "x_test": rng.normal(5.0, 2.0, (40, *shape)).astype(np.float32),
        "y_test": np.arange(40) % classes,
    }
    arrays.update(replace)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def pipeline(path, **options):
    config = SequenceClassificationConfig(arrays=str(path), batch_size=16, **options)
    return SequenceClassificationPipeline(config)


def test_one_channel_signals_are_described_split_by_class_and_batched(tmp_path):
    p = pipeline(write(tmp_path / "s.npz"), validation_split=0.25)
    meta = p.describe()
    assert meta.input_shape == (16, 1) and meta.num_classes == 3
    assert meta.class_names == ["0", "1", "2"]
    assert (meta.num_train, meta.num_validation, meta.num_test) == (150, 50, 40)
    _, y_val = p._parts["validation"]
    assert np.bincount(y_val).tolist() in ([17, 17, 16], [17, 16, 17], [16, 17, 17])
    x_train = p._parts["train"][0]
    np.testing.assert_allclose(meta.extra["mean"], [x_train.mean()], rtol=1e-5)
    np.testing.assert_allclose(meta.extra["variance"], [x_train.var()], rtol=1e-4)
    x, y = next(iter(p.train_data().train))
    assert x.shape == (16, 16, 1) and x.dtype.name == "float32" and y.dtype.name == "int64"
    assert sum(int(b[1].shape[0]) for b in p.train_data().validation) == 50
    assert sum(int(b[1].shape[0]) for b in p.test_data(batch_size=7)) == 40


def test_channels_and_class_names_are_kept(tmp_path):
    names = np.array(["walk", "run", "sit"])
    p = pipeline(write(tmp_path / "s.npz", shape=(32, 3), class_names=names))
    meta = p.describe()
    assert meta.input_shape == (32, 3) and meta.class_names == ["walk", "run", "sit"]
    assert len(meta.extra["mean"]) == 3 and len(meta.extra["variance"]) == 3


def test_a_channel_constant_in_training_is_centred_not_blown_up(tmp_path):
    """A feature that never varies in training (all zero, as 9 of sklearn's 64 digit pixels)
    keeps a scale of 1: with its variance as the floor, the model saw a test value 1 away as
    ~1e6 deviations out (a probe's test loss was 119,838)."""
    x = np.random.default_rng(1).normal(0, 1, (200, 4, 3)).astype(np.float32)
    x[..., 2] = 0.0
    p = pipeline(write(tmp_path / "s.npz", shape=(4, 3), x_train=x))
    meta = p.describe()
    assert meta.extra["variance"][2] == 1.0 and meta.extra["mean"][2] == 0.0
    assert 0.5 < meta.extra["variance"][0] < 1.5  # the others keep their own


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        ({"x_train": None}, "missing array 'x_train'"),
        ({"x_train": np.zeros((200, 2, 2, 2), np.float32)}, r"x_train must be \(N, L\) or"),
        ({"x_test": np.zeros((40, 9), np.float32)}, r"x_train examples are \(16, 1\)"),
        ({"y_train": np.arange(199) % 3}, "x_train has 200 examples but y_train 199"),
        ({"x_train": np.array([["a"] * 16] * 200)}, "x_train must hold numbers"),
        ({"y_test": np.full(40, 1.5)}, "y_test must hold integer class ids"),
        ({"y_test": np.full(40, 3), "class_names": np.array(["a", "b", "c"])}, r"y_test\[0\] = 3"),
        ({"y_train": np.full(200, 2)}, r"y_train has 1 class \(2\); need at least 2"),
        (
            {"y_test": np.r_[np.full(37, 1), np.full(3, 5)]},
            r"y_test has class 5 \(3 test examples of 1 such class\) that y_train lacks",
        ),
    ],
)
def test_bad_arrays_are_one_line_naming_the_problem(tmp_path, replace, message):
    with pytest.raises(UserError, match=message) as error:
        pipeline(write(tmp_path / "s.npz", **replace)).check_available()
    assert "\n" not in str(error.value) and str(tmp_path / "s.npz") in str(error.value)


def test_a_nan_is_named_by_its_position(tmp_path):
    x = np.ones((200, 16), np.float32)
    x[7, 3] = np.nan
    with pytest.raises(UserError, match=r"x_train\[7, 3\] = nan is not a finite float32 number"):
        pipeline(write(tmp_path / "s.npz", x_train=x)).check_available()
    big = np.ones((200, 16), np.float64)
    big[9, 1] = 1e39  # finite in float64, inf in the float32 the model reads
    with pytest.raises(UserError, match=r"x_train\[9, 1\] = 1e\+39 is not a finite float32"):
        pipeline(write(tmp_path / "s.npz", x_train=big)).check_available()


def test_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        pipeline(tmp_path / "none.npz").check_available()
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(UserError, match="corrupt or truncated npz"):
        pipeline(tmp_path / "bad.npz").check_available()


def test_too_few_training_examples_for_a_batch(tmp_path):
    with pytest.raises(UserError, match="fewer than data.batch_size=16"):
        pipeline(write(tmp_path / "s.npz"), train_examples=12).check_available()


def test_train_examples_is_a_random_subset_of_a_class_sorted_file(tmp_path):
    y = np.repeat(np.arange(4), 50)  # sorted by class, as files often are
    p = pipeline(write(tmp_path / "s.npz", y_train=y), train_examples=80, validation_split=0.25)
    _, y_train = p._parts["train"]
    assert p.describe().num_train + p.describe().num_validation == 80
    assert set(np.unique(y_train)) == {0, 1, 2, 3}  # not the first 80 rows: classes 0 and 1


def test_one_example_per_class_leaves_no_validation_and_says_so(tmp_path):
    x = np.zeros((3, 16), np.float32)
    path = write(tmp_path / "s.npz", x_train=x, y_train=np.arange(3))
    with pytest.raises(UserError, match="no validation examples"):
        SequenceClassificationPipeline(
            SequenceClassificationConfig(arrays=str(path), batch_size=1)
        ).check_available()


def test_a_bare_npy_is_named_as_not_a_dataset(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 16)))
    with pytest.raises(UserError, match=r"not a dataset npz \(one array of shape \(4, 16\)\)"):
        pipeline(tmp_path / "x.npy").check_available()
