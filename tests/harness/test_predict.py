"""`harness predict`'s reading of sequence inputs (.npy / .csv): shapes, names, bad files."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import UserError
from harness.predict import _sequences

SHAPE = [8, 2]  # the serving signature's (length, channels)


def test_one_sequence_or_a_batch_from_npy_and_csv(tmp_path):
    one = np.arange(16, dtype=np.float64).reshape(8, 2)
    np.save(tmp_path / "one.npy", one)
    np.save(tmp_path / "three.npy", np.stack([one] * 3))
    np.savetxt(tmp_path / "rows.csv", np.stack([one.ravel()] * 2), delimiter=",")
    got = _sequences(tmp_path / "one.npy", SHAPE)
    assert got.shape == (1, 8, 2) and got.dtype == np.float32
    np.testing.assert_array_equal(got[0], one)
    assert _sequences(tmp_path / "three.npy", SHAPE).shape == (3, 8, 2)
    rows = _sequences(tmp_path / "rows.csv", SHAPE)  # one flattened sequence per row
    assert rows.shape == (2, 8, 2)
    np.testing.assert_array_equal(rows[1], one)
    np.save(tmp_path / "mono.npy", np.arange(24.0).reshape(3, 8))  # one channel: (N, L)
    assert _sequences(tmp_path / "mono.npy", [8, 1]).shape == (3, 8, 1)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("short.npy", np.zeros(15), r"expected sequences of 8 steps x 2 channels \(an array"),
        ("flat.npy", np.zeros(32), r"got float64 array of shape \(32,\)"),  # no guessing
        ("swapped.npy", np.zeros((3, 2, 8)), r"got float64 array of shape \(3, 2, 8\)"),
        ("wide.csv", "1,2,3,4\n", r"\(rows of 16 numbers\), got float64 array of shape \(1, 4\)"),
        ("words.csv", "a,b,c\n", "not a readable array of numbers"),
        ("nan.npy", np.full((8, 2), np.nan), "not finite numbers"),
        ("broken.npy", b"\x93NUMPY garbage", "not a readable array of numbers"),
        ("seq.txt", "1,2,3", "not a .npy or .csv file"),
    ],
)
def test_bad_inputs_are_one_line_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(path, content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(UserError, match=message) as error:
        _sequences(path, SHAPE)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def test_a_missing_input_file_is_named_as_missing(tmp_path):
    import tensorflow as tf

    from harness.predict import _image

    with pytest.raises(UserError, match=r"missing\.png: no such file$"):
        _image(tf, tmp_path / "missing.png", [28, 28, 1])
    with pytest.raises(UserError, match=r"missing\.npy: no such file$"):
        _sequences(tmp_path / "missing.npy", SHAPE)


def test_a_text_model_reads_text_and_txt_files_and_refuses_other_files(tmp_path, monkeypatch):
    """`reviews.csv` is not a review: a file other than .txt is refused, not classified."""
    import tensorflow as tf

    from harness.predict import _load_inputs

    monkeypatch.chdir(tmp_path)
    # A line break only at "\n", as the file's line numbers count (a review may hold U+2028).
    (tmp_path / "reviews.txt").write_text("Great film.\u2028Yes.\r\n\nDull.\n")
    (tmp_path / "reviews.csv").write_text("text\nGreat film.\n")
    serving = {"input_dtype": "string"}
    batch, labels = _load_inputs(tf, ["A fine cast", "reviews.txt"], serving)
    texts = ["A fine cast", "Great film.\u2028Yes.", "Dull."]
    assert [t.decode() for t in batch.numpy()] == texts
    assert labels == ["A fine cast", "reviews.txt:1", "reviews.txt:2"]
    assert len(_load_inputs(tf, ["x" * 5000], serving)[1]) == 1  # too long for a file name
    with pytest.raises(UserError, match=r"^reviews\.csv: a file, not text; .* \.txt files"):
        _load_inputs(tf, ["reviews.csv"], serving)
    with pytest.raises(UserError, match=r"^gone\.txt: no such file"):
        _load_inputs(tf, ["gone.txt"], serving)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"no text in it"),
        (b"\n  \n\n", r"no text in it"),
        (b"fine\ncaf\xe9 au lait\n", r"not UTF-8 text \(byte 8, line 2\)"),
    ],
)
def test_an_empty_or_non_utf8_txt_file_is_one_line_naming_it(tmp_path, content, message):
    import tensorflow as tf

    from harness.predict import _load_inputs

    path = tmp_path / "reviews.txt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message) as error:
        _load_inputs(tf, [str(path)], {"input_dtype": "string"})
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"a,b\n1,2\nnan,3\n", r"line 3, column a: 'nan' is not a finite number"),
        (b"a,b\n1,inf\n2,3\n", r"line 2, column b: 'inf' is not a finite number"),
        (b"a,b\n1,x\n", r"line 2, column b: 'x' is not a number"),
        (b"a,b\n1\n", r"line 2, column b: None is not a number"),
        (b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'\xff\xfe", r"not a UTF-8 CSV file \(byte"),
    ],
)
def test_a_forecasters_bad_csv_is_one_line_naming_the_file(tmp_path, content, message):
    from harness.predict import _last_window

    path = tmp_path / "recent.csv"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message) as error:
        _last_window(path, ["a", "b"], 1)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


@pytest.mark.filterwarnings("error")  # numpy's "Empty input file" warning must not print
@pytest.mark.parametrize("content", ["", "\n\n"])
def test_an_empty_sequence_csv_is_refused_without_a_warning(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(UserError, match=r"empty\.csv: no sequences in it"):
        _sequences(path, SHAPE)


def test_a_forecasters_csv_header_is_read_as_training_reads_it(tmp_path):
    """Training strips header names (`time, temp` names "temp"); so does predict."""
    from harness.predict import _last_window

    path = tmp_path / "recent.csv"
    path.write_text("time, a, b\n0, 1, 2\n1, 3, 4\n")
    np.testing.assert_array_equal(_last_window(path, ["a", "b"], 2), [[1, 2], [3, 4]])


def test_a_grayscale_model_reads_gif_and_bmp_images(tmp_path):
    """A GIF decodes only to RGB and a BMP only as stored: decoded as stored, then converted
    (as training does), not "not a readable image"."""
    import tensorflow as tf
    from PIL import Image

    from harness.predict import _image

    pixels = np.zeros((20, 20, 3), np.uint8)
    pixels[5:15, 5:15] = 200
    for name in ("digit.gif", "digit.bmp"):
        Image.fromarray(pixels).save(tmp_path / name)
        image = _image(tf, tmp_path / name, [28, 28, 1])
        assert image.shape == (28, 28, 1) and int(tf.reduce_max(image)) > 150, name
