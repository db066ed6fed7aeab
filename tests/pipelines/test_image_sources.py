"""Image sources beyond TFDS (arrays, folders), stratified validation, disk cache, augmentation."""

from __future__ import annotations

import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf
from pydantic import ValidationError

from harness.errors import UserError
from pipelines.image import ImageClassificationConfig, ImageClassificationPipeline
from tests.conftest import tiny_images


def pipeline(**options) -> ImageClassificationPipeline:
    return ImageClassificationPipeline(ImageClassificationConfig(**options))


@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(1)
    x_train, y_train = tiny_images(300, rng)
    x_test, y_test = tiny_images(50, rng)
    path = tmp_path / "arrays.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def write_png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(image).numpy())


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    for split, n in (("train", 12), ("test", 4)):
        for c in ("cat", "dog"):
            for i in range(n):
                value = 40 if c == "cat" else 200
                write_png(root / split / c / f"{i}.png", np.full((20, 24, 3), value, np.uint8))
    return root


def test_exactly_one_source_is_required():
    with pytest.raises(ValidationError, match="exactly one image source"):
        ImageClassificationConfig(dataset="mnist", arrays="x.npz")
    with pytest.raises(ValidationError, match="exactly one image source"):
        ImageClassificationConfig()


def test_arrays_source(npz):
    p = pipeline(arrays=str(npz), batch_size=16, validation_split=0.2)
    p.check_available()
    meta = p.describe()
    assert (meta.num_train, meta.num_validation, meta.num_test) == (240, 60, 50)
    assert meta.input_shape == (28, 28, 1)
    x, y = next(iter(p.train_data().train))
    assert x.shape == (16, 28, 28, 1) and x.dtype == tf.float32


def test_arrays_source_names_its_classes_when_the_npz_does(npz, tmp_path):
    arrays = dict(np.load(npz))
    named = tmp_path / "named.npz"
    top = int(max(arrays["y_train"].max(), arrays["y_test"].max()))
    names = [f"class {i}" for i in range(top + 1)]
    np.savez(named, **arrays, class_names=np.array(names))
    p = pipeline(arrays=str(named), batch_size=16)
    p.check_available()
    assert p.describe().class_names == names
    np.savez(named, **arrays, class_names=np.array(names[:top]))  # a label without a name
    with pytest.raises(UserError, match=rf"y_train.*labels; class_names names {top} classes\)"):
        pipeline(arrays=str(named), batch_size=16).check_available()
    np.savez(named, **{**arrays, "y_train": np.zeros_like(arrays["y_train"])})
    with pytest.raises(UserError, match="y_train has 1 class \\(0\\); need at least 2"):
        pipeline(arrays=str(named), batch_size=16).check_available()
    np.savez(named, **{**arrays, "y_train": arrays["y_train"] % 2})  # classes 0 and 1 only
    assert set(arrays["y_test"]) > {0, 1}
    with pytest.raises(UserError, match=r"y_test has class 2 \(\d+ test examples of \d+ such"):
        pipeline(arrays=str(named), batch_size=16).check_available()


def test_folder_source_with_class_names(folder):
    p = pipeline(folder=str(folder), batch_size=4, validation_split=0.25, channels=3)
    meta = p.describe()
    assert meta.class_names == ["cat", "dog"] and meta.input_shape == (20, 24, 3)
    x, y = next(iter(p.train_data().train))
    # cats are dark, dogs bright: labels follow the folder names
    assert all(
        (float(img.numpy().mean()) > 100) == bool(lbl) for img, lbl in zip(x, y, strict=True)
    )


def test_folder_of_grayscale_images_gives_a_grayscale_model_input(tmp_path):
    for split in ("train", "test"):
        for c in ("a", "b"):
            for i in range(4):
                write_png(tmp_path / split / c / f"{i}.png", np.full((12, 10, 1), 9 * i, np.uint8))
    p = pipeline(folder=str(tmp_path), batch_size=2, validation_split=0.25)
    assert p.describe().input_shape == (12, 10, 1)
    assert next(iter(p.train_data().train))[0].shape == (2, 12, 10, 1)
    forced = pipeline(folder=str(tmp_path), batch_size=2, validation_split=0.25, channels=3)
    assert forced.describe().input_shape == (12, 10, 3)


def test_folder_with_mixed_sizes_needs_a_resize(folder):
    write_png(folder / "train" / "cat" / "odd.png", np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(UserError, match="mixed sizes.*set data.image_size"):
        pipeline(folder=str(folder)).check_available()
    resized = pipeline(folder=str(folder), image_size=(16, 16), batch_size=4)
    resized.check_available()
    assert next(iter(resized.train_data().train))[0].shape == (4, 16, 16, 3)


def test_images_replaced_under_the_same_names_give_another_cache_key(folder):
    """The disk cache is keyed by the folder's identity: counts alone would read a stale
    cache after a user replaced images."""
    from pipelines.image_sources import FolderImages

    before = FolderImages(folder, None, None).info()["identity"]
    assert FolderImages(folder, None, None).info()["identity"] == before
    write_png(folder / "train" / "cat" / "0.png", np.full((20, 24, 3), 90, np.uint8))
    assert FolderImages(folder, None, None).info()["identity"] != before


def test_a_test_class_missing_from_train_is_named(folder):
    for name in ("purple", "owl"):
        write_png(folder / "test" / name / "0.png", np.zeros((20, 24, 3), np.uint8))
    with pytest.raises(UserError) as error:
        pipeline(folder=str(folder)).check_available()
    assert str(error.value) == (
        f"data.folder: {folder / 'test'} has class folder(s) owl, purple missing from "
        f"{folder / 'train'} (train/ names the classes the model learns)"
    )


def test_test_arrays_of_another_size_are_fine_when_both_are_resized(npz):
    with np.load(npz) as raw:
        arrays = {k: raw[k] for k in raw.files}
    np.savez(npz, **{**arrays, "x_test": np.pad(arrays["x_test"], ((0, 0), (0, 4), (0, 4)))})
    p = pipeline(arrays=str(npz), image_size=(16, 16), batch_size=10)
    p.check_available()
    x, _ = next(iter(p.test_data(batch_size=10)))
    assert x.shape[1:] == (16, 16, 1)


def test_a_folder_of_one_class_or_with_an_empty_class_is_refused(folder):
    """Hidden folders (a notebook's checkpoints) are not classes; one class, or a class
    folder without images (a model output no example teaches), is refused by name."""
    (folder / "train" / ".ipynb_checkpoints").mkdir()
    (folder / "test" / ".ipynb_checkpoints").mkdir()
    assert pipeline(folder=str(folder), batch_size=4).describe().class_names == ["cat", "dog"]
    (folder / "train" / "owl").mkdir()
    with pytest.raises(UserError) as error:
        pipeline(folder=str(folder)).check_available()
    assert str(error.value) == (
        f"data.folder: {folder / 'train' / 'owl'} has no images: a class needs training "
        "examples (1 such folder)"
    )
    (folder / "train" / "owl").rmdir()
    for split in ("train", "test"):
        for path in (folder / split / "dog").iterdir():
            path.unlink()
        (folder / split / "dog").rmdir()
    with pytest.raises(UserError) as error:
        pipeline(folder=str(folder)).check_available()
    assert str(error.value) == (
        f"data.folder: {folder / 'train'} has 1 class folder (cat); need at least 2"
    )


def test_a_train_class_missing_from_test_is_only_not_tested(folder):
    write_png(folder / "train" / "owl" / "0.png", np.zeros((20, 24, 3), np.uint8))
    p = pipeline(folder=str(folder), batch_size=4, validation_split=0.2)
    p.check_available()
    meta = p.describe()
    assert meta.class_names == ["cat", "dog", "owl"] and meta.num_test == 8


@pytest.mark.parametrize("image_size", [None, (16, 16)], ids=["as-is", "resized"])
def test_corrupt_image_is_named(folder, image_size):
    bad = folder / "train" / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(UserError, match="broken.png is not a readable image"):
        pipeline(folder=str(folder), image_size=image_size).check_available()


def nan_at(index):
    def put(x):
        x = x.astype(np.float32)
        x[index] = np.nan
        return x

    return put


@pytest.mark.parametrize(
    "change, message",
    [
        (
            dict(x_train=lambda x: x / 255.0),
            r"x_train must hold raw pixels 0..255 .*float64 values such as "
            r"x_train\[\d+, \d+, \d+\] = 0\.\d+",
        ),
        (dict(x_train=nan_at((3, 1, 2))), r"x_train\[3, 1, 2\] = nan; the pipeline rescales"),
        (dict(x_test=lambda x: x.astype(np.int16) - 5), r"x_test must hold raw pixels .*int16"),
        (dict(y_train=lambda y: y - 1), r"y_train\[\d+\] = -1 is not a class id >= 0"),
        (dict(y_test=lambda y: y + 0.5), "y_test must hold integer class ids, got float64"),
        (
            dict(x_test=lambda x: np.pad(x, ((0, 0), (0, 4), (0, 4)))),
            r"x_test images are 32x32x1 but x_train images are 28x28x1 \(data.image_size would",
        ),
        (
            dict(x_test=lambda x: np.repeat(x[..., None], 3, axis=-1)),
            r"x_test images are 28x28x3 but x_train images are 28x28x1$",
        ),
        (
            dict(y_train=lambda y: np.where(y == 1, 90210, y), y_test=lambda y: y * 0),
            r"y_train and y_test hold \d+ distinct class ids up to 90210: a model would have "
            r"90211 classes; renumber them 0..\d+ or give class names",
        ),
    ],
    ids=[
        "scaled-floats",
        "nan-pixel",
        "negative-pixels",
        "negative-label",
        "float-labels",
        "test-size",
        "test-channels",
        "sparse-ids",
    ],
)
def test_bad_arrays_are_named_before_training(npz, change, message):
    with np.load(npz) as raw:
        arrays = {k: raw[k] for k in raw.files}
    for key, fn in change.items():
        arrays[key] = fn(arrays[key].astype(np.int64) if key.startswith("y") else arrays[key])
    np.savez(npz, **arrays)
    with pytest.raises(UserError, match=message):
        pipeline(arrays=str(npz)).check_available()


def test_whole_pixel_values_of_another_dtype_are_accepted(npz):
    with np.load(npz) as raw:
        arrays = {k: raw[k] for k in raw.files}
    np.savez(npz, **{**arrays, "x_train": arrays["x_train"].astype(np.float32)})
    pipeline(arrays=str(npz)).check_available()


def test_stratified_validation_keeps_class_shares(npz):
    p = pipeline(arrays=str(npz), validation_split=0.2, stratify=True, batch_size=16)
    labels = np.load(npz)["y_train"]
    val = np.concatenate([y.numpy() for _, y in p.train_data().validation])
    for c in range(10):
        assert abs((val == c).mean() - (labels == c).mean()) < 0.03


def test_stratified_tfds_split(data_dir):
    p = pipeline(dataset="fashion_mnist", validation_split=0.2, stratify=True, batch_size=16)
    meta = p.describe()
    assert meta.num_train + meta.num_validation == 600
    assert sum(int(x.shape[0]) for x, _ in p.train_data().validation) == meta.num_validation


def test_disk_cache_under_data_dir_by_fingerprint(npz, tmp_path):
    cache_dir = tmp_path / "cache"
    options = dict(arrays=str(npz), batch_size=16, cache="disk", cache_dir=str(cache_dir))
    next(iter(pipeline(**options).train_data().train))
    first = sorted(p.name for p in cache_dir.iterdir())
    next(iter(pipeline(**options).train_data().train))
    assert sorted(p.name for p in cache_dir.iterdir()) == first  # shared, not rebuilt
    next(iter(pipeline(**options, image_size=(14, 14)).train_data().train))
    assert len(list(cache_dir.iterdir())) > len(first)  # new preprocessing, new cache


def test_augmentation_only_on_train_and_tunable(npz):
    options = dict(
        arrays=str(npz),
        batch_size=300 - 30,
        validation_split=0.1,
        augment={"flip_horizontal": 1.0},
        shuffle_buffer=1,
        deterministic=True,
    )
    plain = pipeline(arrays=str(npz), batch_size=270, validation_split=0.1, shuffle_buffer=1)
    flipped = pipeline(**options)
    x_plain = next(iter(plain.train_data().train))[0].numpy()
    x_flip = next(iter(flipped.train_data().train))[0].numpy()
    np.testing.assert_array_equal(x_flip, x_plain[:, :, ::-1, :])
    v_plain = next(iter(plain.train_data().validation))[0].numpy()
    v_flip = next(iter(flipped.train_data().validation))[0].numpy()
    np.testing.assert_array_equal(v_plain, v_flip)  # validation is never augmented

    tuned = pipeline(**options, augment_strength_choices=[0.0, 1.0])
    hp = kt.HyperParameters()
    tuned.declare_hyperparameters(hp)
    assert hp.get("augment_strength") == 1.0
    hp.values["augment_strength"] = 0.0
    assert tuned.augment_fn(hp) is None


def test_folder_mixing_grayscale_and_colour_formats(tmp_path):
    """A colour GIF (decodes only to RGB) in a grayscale folder is converted, not 'corrupt'."""
    for split in ("train", "test"):
        for c in ("a", "b"):
            for i in range(3):
                write_png(tmp_path / split / c / f"{i}.png", np.full((8, 8, 1), 40 * i, np.uint8))
    gif = tf.io.encode_png(np.full((8, 8, 3), 200, np.uint8)).numpy()  # PNG bytes, RGB
    (tmp_path / "train" / "b" / "z_colour.png").write_bytes(gif)
    p = pipeline(folder=str(tmp_path), batch_size=2, validation_split=0.25)
    p.check_available()
    assert p.describe().input_shape == (8, 8, 1)
    shapes = {tuple(x.shape[1:]) for x, _ in p.train_data().validation}
    assert shapes == {(8, 8, 1)}


def test_the_one_split_shared_by_the_pipelines():
    from pipelines.image_sources import split_indices

    labels = np.array([0] * 50 + [1] * 30 + [2] * 19 + [3])  # class 3 has one example
    train, val = split_indices(labels, 0.2, stratify=True, seed=5)
    assert sorted(np.concatenate([train, val])) == list(range(100))  # a partition
    assert {c: int((labels[val] == c).sum()) for c in range(4)} == {0: 10, 1: 6, 2: 4, 3: 0}
    again = split_indices(labels, 0.2, stratify=True, seed=5)
    assert all((a == b).all() for a, b in zip((train, val), again, strict=True))  # seeded
    train, val = split_indices(labels, 0.2, stratify=False, seed=5)
    assert len(val) == 20 and not set(train) & set(val)
    _, tiny = split_indices(np.array([0, 1]), 0.01, stratify=False, seed=0)
    assert len(tiny) == 1  # never an empty validation set
    with pytest.raises(UserError, match="no validation examples"):  # stratified, all singletons
        split_indices(np.array([0, 1, 2]), 0.5, stratify=True, seed=0)
    # Class shares kept exactly where they divide (scikit-learn's allocation).
    labels = np.repeat([0, 1, 2], [700, 200, 100])
    train, val = split_indices(labels, 0.1, stratify=True, seed=3)
    assert np.bincount(labels[val]).tolist() == [70, 20, 10]
    assert not (np.diff(train) > 0).all()  # shuffled, not in file (class-sorted) order
    # Fewer validation examples than classes cannot hold one of each: drawn unstratified.
    labels = np.repeat(np.arange(10), 5)
    train, val = split_indices(labels, 0.1, stratify=True, seed=1)
    assert len(val) == 5 and sorted(np.concatenate([train, val])) == list(range(50))
