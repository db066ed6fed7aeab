"""Offline import writes TFDS's own layout: `tfds.load(name)` reads the local copy."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from harness.errors import UserError
from pipelines import IMPORTERS
from pipelines.offline import Importer, import_dataset


def test_imported_copy_loads_by_name_with_tfds(data_dir, tiny_npz):
    import tensorflow_datasets as tfds

    builder = tfds.builder("fashion_mnist", data_dir=str(data_dir))
    assert builder.is_prepared()
    assert builder.info.splits["train"].num_examples == 600
    loaded = tfds.load("fashion_mnist", split="train", data_dir=str(data_dir), as_supervised=True)
    # TFDS stores examples in its own (key-hash) order, as for a downloaded copy.
    got = sorted((x.numpy()[..., 0].tobytes(), int(y)) for x, y in loaded)
    with np.load(tiny_npz) as raw:
        want = sorted(
            (x.tobytes(), int(y)) for x, y in zip(raw["x_train"], raw["y_train"], strict=True)
        )
    assert got == want


def test_importing_twice_is_a_no_op(data_dir, tiny_npz):
    counts = import_dataset(IMPORTERS.get("fashion_mnist"), tiny_npz, data_dir)
    assert counts == {"train": 600, "test": 200}


def test_importing_onto_an_existing_copy_reads_the_file(data_dir, tiny_npz, tmp_path):
    corrupt = tmp_path / "fashion_mnist.npz"
    corrupt.write_bytes(tiny_npz.read_bytes()[:1000])
    with pytest.raises(UserError, match=f"{corrupt}: corrupt or truncated npz"):
        import_dataset(IMPORTERS.get("fashion_mnist"), corrupt, data_dir)
    with np.load(tiny_npz) as raw:
        arrays = {k: raw[k] for k in raw.files}
    other = tmp_path / "other.npz"
    np.savez(other, **{**arrays, "x_test": arrays["x_test"][:50], "y_test": arrays["y_test"][:50]})
    with pytest.raises(UserError, match=r"already a different copy \(test 200, train 600, "):
        import_dataset(IMPORTERS.get("fashion_mnist"), other, data_dir)
    # Same counts, other pixels: the checksum tells them apart.
    same_counts = tmp_path / "same_counts.npz"
    np.savez(same_counts, **{**arrays, "x_test": 255 - arrays["x_test"]})
    with pytest.raises(UserError, match="already a different copy .*imported from"):
        import_dataset(IMPORTERS.get("fashion_mnist"), same_counts, data_dir)
    assert import_dataset(IMPORTERS.get("fashion_mnist"), tiny_npz, data_dir)  # the same: fine


@pytest.mark.parametrize(
    "labels, message",
    [
        (lambda y: y.astype(np.float32) + 0.5, "y_train must hold integer class ids, got float32"),
        (
            lambda y: np.where(np.arange(len(y)) == 7, -1, y.astype(np.int64)),
            r"y_train\[7\] = -1 is not a class",
        ),
        (
            lambda y: np.where(np.arange(len(y)) == 3, 10, y),
            r"y_train\[3\] = 10 is not a class id 0..9",
        ),
    ],
    ids=["float", "negative", "out-of-range"],
)
def test_bad_labels_are_named_before_anything_is_written(tmp_path, tiny_npz, labels, message):
    with np.load(tiny_npz) as raw:
        arrays = {k: raw[k] for k in raw.files}
    path = tmp_path / "fashion_mnist.npz"
    np.savez(path, **{**arrays, "y_train": labels(arrays["y_train"])})
    with pytest.raises(UserError, match=f"{path}: {message}"):
        import_dataset(IMPORTERS.get("fashion_mnist"), path, tmp_path / "out")
    assert not (tmp_path / "out" / "fashion_mnist").exists()


def test_images_of_another_shape_are_named_before_anything_is_written(tmp_path, tiny_npz):
    with np.load(tiny_npz) as raw:
        arrays = {k: raw[k] for k in raw.files}
    path = tmp_path / "fashion_mnist.npz"
    np.savez(path, **{**arrays, "x_test": np.zeros((200, 32, 32, 3), np.uint8)})
    with pytest.raises(UserError) as error:
        import_dataset(IMPORTERS.get("fashion_mnist"), path, tmp_path / "out")
    assert str(error.value) == (
        f"{path}: x_test has shape (200, 32, 32, 3), but fashion_mnist images are 28x28x1: "
        "expected (N, 28, 28, 1) or (N, 28, 28)"
    )
    assert not (tmp_path / "out").exists()


def test_an_import_failing_while_written_leaves_no_folders(tmp_path):
    """Whatever fails inside TFDS's writing (here an image the reader let through), the
    folders the import made go; the data dir's other contents stay."""
    wrong = {"image": np.zeros((3, 3, 1), np.uint8), "label": 0}
    unchecked = Importer(
        "fashion_mnist", "x", lambda path, info: {"train": iter([(0, wrong)]), "test": iter([])}
    )
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "kept").write_text("")
    with pytest.raises(ValueError, match="incompatible"):
        import_dataset(unchecked, tmp_path / "out" / "kept", tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["kept"]


def test_npz_with_wrong_arrays_names_the_file(tmp_path):
    path = tmp_path / "fashion_mnist.npz"
    np.savez(path, x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(UserError) as error:
        import_dataset(IMPORTERS.get("fashion_mnist"), path, tmp_path / "out")
    assert str(error.value) == (
        f"{path}: not a dataset npz: has no arrays 'y_train', 'x_test', 'y_test' "
        "(it has: x_train; needs x_train, y_train, x_test, y_test)"
    )


@pytest.mark.parametrize(
    "content", [b"\x89PNG\r\n\x1a\n rest of an image", b"\x93NUMPY a lone .npy"], ids=["png", "npy"]
)
def test_a_file_that_is_no_npz_is_named(tmp_path, content):
    path = tmp_path / "fashion_mnist.npz"
    path.write_bytes(content)
    with pytest.raises(UserError, match=f"^{path}: not an .npz archive"):
        import_dataset(IMPORTERS.get("fashion_mnist"), path, tmp_path / "out")


def test_imdb_jsonl_import(tmp_path, capfd):
    import tensorflow_datasets as tfds

    path = tmp_path / "imdb_reviews.jsonl.gz"
    rows = [
        {"split": s, "label": i % 2, "id": i, "text": f"review {s} {i}<br />ok"}
        for s in ("train", "test")
        for i in range(6)
    ]
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    counts = import_dataset(IMPORTERS.get("imdb_reviews"), path, tmp_path / "tfds")
    assert counts == {"train": 6, "test": 6}
    printed = capfd.readouterr()
    assert "Downloading" not in printed.out + printed.err  # nothing was downloaded
    texts = [
        t.numpy().decode()
        for t, _ in tfds.load(
            "imdb_reviews", split="test", data_dir=str(tmp_path / "tfds"), as_supervised=True
        )
    ]
    assert sorted(texts)[0].startswith("review test")


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "imdb_reviews.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"split": "train"}\n' * 100)[:40])
    with pytest.raises(UserError, match=str(path)):
        import_dataset(IMPORTERS.get("imdb_reviews"), path, tmp_path / "tfds")


def test_a_failed_download_is_one_error_naming_the_offline_import(tmp_path, monkeypatch, caplog):
    """Offline, TFDS retries each request with back-off; urllib3 would log a warning line per
    retry. The harness answers once, with the import command to run instead."""
    import logging
    import socket

    from tensorflow_datasets.core.download import downloader

    from pipelines.tfds_source import ensure_prepared

    def no_network(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)  # offline, even on a machine that is not
    monkeypatch.setattr(downloader, "MAX_RETRIES", 2)  # TFDS's 10 take minutes
    with caplog.at_level(logging.WARNING):
        with pytest.raises(UserError) as error:
            ensure_prepared("imdb_reviews", tmp_path, download=True)
    message = str(error.value)
    assert message.startswith("download failed (") and "\n" not in message
    assert "harness data import imdb_reviews PATH/TO/imdb_reviews.jsonl.gz" in message
    assert not [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]


def test_builders_of_unprepared_datasets_leave_no_temporary_directories(
    tmp_path, tiny_npz, monkeypatch
):
    import tempfile

    from pipelines import tfds_source

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    empty = tmp_path / "empty"
    with pytest.raises(UserError, match="not prepared"):
        tfds_source.ensure_prepared("fashion_mnist", empty, download=False)
    import_dataset(IMPORTERS.get("fashion_mnist"), tiny_npz, tmp_path / "fresh")
    assert tfds_source.builder("fashion_mnist", tmp_path / "fresh").is_prepared()
    assert list(scratch.iterdir()) == []  # TFDS alone leaves an empty tmp*tfds per builder
