"""Augmentation: one implementation (batched ops), used per batch and per image; eager vs
Dataset.map, shapes and ranges, semantics, config validation."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from pydantic import ValidationError

from pipelines.augment import AugmentConfig, make_augment_fn, make_batch_augment_fn
from pipelines.augment_ops import BATCH_OPS, rotate

SHAPES = [(28, 28, 1), (32, 32, 3)]
N = 6
# One strong setting per op, in BATCH_OPS order.
STRONG = {
    "flip_horizontal": {"flip_horizontal": 1.0},
    "flip_vertical": {"flip_vertical": 1.0},
    "crop": {"crop_padding": 4},
    "rotation": {"rotation": 0.25, "affine_fill": "zeros"},
    "zoom": {"zoom": 0.5},
    "translation": {"translation": 0.3, "affine_fill": "zeros"},
    "brightness": {"brightness": 60.0},
    "contrast": {"contrast": (0.3, 0.5)},
    "cutout": {"cutout": 1.0, "cutout_fill": 0.0},
}
# Arguments that make each registered op a no-op.
OFF = {
    "flip_horizontal": {"probability": 0.0},
    "flip_vertical": {"probability": 0.0},
    "crop": {"padding": 0},
    "affine": {},
    "brightness": {"max_delta": 0.0},
    "contrast": {"lower": 1.0, "upper": 1.0},
    "cutout": {"probability": 0.0},
}


@pytest.fixture(autouse=True)
def tf_seed():
    tf.random.set_seed(0)


def images(shape, low: float = 0.0, high: float = 255.0) -> np.ndarray:
    return np.random.default_rng(1).uniform(low, high, (N, *shape)).astype(np.float32)


def seeds() -> np.ndarray:
    return np.random.default_rng(2).integers(0, 2**31 - 1, (N, 2)).astype(np.int32)


def run_both(fn, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`fn(image, seed)` per image eagerly and inside Dataset.map, with the same seeds."""
    eager = np.stack(
        [fn(tf.constant(x), tf.constant(s)).numpy() for x, s in zip(batch, seeds(), strict=True)]
    )
    mapped = tf.data.Dataset.from_tensor_slices((batch, seeds())).map(fn)
    return eager, np.stack([x.numpy() for x in mapped])


def check_images(out: np.ndarray, batch: np.ndarray) -> None:
    assert out.shape == batch.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op", list(STRONG))
def test_strong_op_changes_images_same_eagerly_and_in_map(op, shape):
    batch = images(shape)
    eager, mapped = run_both(make_augment_fn(AugmentConfig(**STRONG[op])), batch)
    check_images(eager, batch)
    check_images(mapped, batch)
    np.testing.assert_allclose(eager, mapped, atol=1e-3)
    changed = np.abs(mapped - batch).max(axis=(1, 2, 3)) > 1e-3
    # A crop window at exactly the center (1 in 81) leaves an image unchanged.
    assert changed.mean() >= 0.8


def test_every_op_declares_its_off_arguments_in_order():
    assert list(OFF) == list(BATCH_OPS)


@pytest.mark.parametrize("shape", SHAPES)
def test_per_image_augment_is_the_batched_ops_on_one_image(shape):
    options = dict(rotation=0.1, crop_padding=2, brightness=20.0, contrast=(0.8, 1.2), cutout=0.5)
    one, batched = make_augment_fn(AugmentConfig(**options)), batch_fn(**options)
    for image, seed in zip(images(shape), seeds(), strict=True):
        alone = one(tf.constant(image), tf.constant(seed)).numpy()
        in_batch = batched(tf.constant(image[None]), tf.constant(seed)).numpy()[0]
        np.testing.assert_array_equal(alone, in_batch)


def test_unseeded_fn_works_in_map_and_default_config_is_identity():
    batch = images((28, 28, 1))
    fn = make_augment_fn(AugmentConfig(flip_horizontal=1.0))
    flipped = np.stack([x.numpy() for x in tf.data.Dataset.from_tensor_slices(batch).map(fn)])
    np.testing.assert_array_equal(flipped, tf.image.flip_left_right(batch).numpy())
    assert AugmentConfig().is_identity()
    np.testing.assert_array_equal(make_augment_fn(AugmentConfig())(batch[0]), batch[0])


def test_vertical_flip_matches_tf():
    batch = images((32, 32, 3))
    _, mapped = run_both(make_augment_fn(AugmentConfig(flip_vertical=1.0)), batch)
    np.testing.assert_array_equal(mapped, tf.image.flip_up_down(batch).numpy())


def test_same_seed_same_image_other_seed_other_image():
    fn = make_augment_fn(AugmentConfig(rotation=0.1, brightness=20.0, cutout=0.5))
    image = tf.constant(images((28, 28, 1))[0])
    first, again = fn(image, tf.constant([1, 2])), fn(image, tf.constant([1, 2]))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, fn(image, tf.constant([3, 4])))


@pytest.mark.parametrize("fill", ["reflect", "zeros"])
def test_crop_with_padding_shifts_content(fill):
    batch, pad = images((32, 32, 3), low=10.0), 4
    _, mapped = run_both(make_augment_fn(AugmentConfig(crop_padding=pad, crop_fill=fill)), batch)
    for out, image in zip(mapped, batch, strict=True):
        center = out[pad:-pad, pad:-pad]
        # The center of the output is a window of the original at some shift in [-pad, pad].
        assert any(
            np.array_equal(center, image[dy : dy + 32 - 2 * pad, dx : dx + 32 - 2 * pad])
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
        )
        assert (out == 0).sum() <= (32**2 - 24**2) * 3  # zeros only from padding, if at all


@pytest.mark.parametrize("shape", SHAPES)
def test_half_turn_equals_two_quarter_turns(shape):
    image = images(shape)[0]
    turned = rotate(tf.constant(image[None]), 0.5).numpy()[0]
    expected = tf.image.rot90(image, 2).numpy()
    np.testing.assert_allclose(turned[1:-1, 1:-1], expected[1:-1, 1:-1], atol=1e-2)
    np.testing.assert_allclose(turned, expected, atol=1.0)


def test_quarter_turn_is_counter_clockwise_like_rot90():
    image = images((32, 32, 1))[0]
    np.testing.assert_allclose(rotate(image[None], 0.25)[0], tf.image.rot90(image), atol=1e-2)


def test_rotation_fill_zeros_blackens_corners_reflect_does_not():
    white = np.full((32, 32, 3), 255.0, np.float32)
    assert rotate(white[None], 0.125, "zeros").numpy()[0, 0, 0].max() == 0.0
    np.testing.assert_allclose(rotate(white[None], 0.125, "reflect")[0], white, atol=1e-3)


def test_cutout_erases_one_rectangle_of_fill_value():
    batch = images((32, 32, 3), low=10.0)
    fn = make_augment_fn(AugmentConfig(cutout=1.0, cutout_size=0.25, cutout_fill=0.0))
    _, mapped = run_both(fn, batch)
    for out, image in zip(mapped, batch, strict=True):
        erased = (out == 0.0).all(axis=-1)
        rows, cols = np.nonzero(erased.any(axis=1))[0], np.nonzero(erased.any(axis=0))[0]
        assert (len(rows), len(cols)) == (8, 8) and erased.sum() == 64  # a filled 8x8 block
        np.testing.assert_array_equal(out[~erased], image[~erased])


def test_brightness_shifts_every_pixel_by_one_delta():
    batch = images((28, 28, 1), low=100.0, high=150.0)  # no clipping with delta <= 50
    _, mapped = run_both(make_augment_fn(AugmentConfig(brightness=50.0)), batch)
    deltas = (mapped - batch).reshape(N, -1)
    np.testing.assert_allclose(deltas, deltas[:, :1].repeat(deltas.shape[1], axis=1), atol=1e-3)
    assert np.all(np.abs(deltas[:, 0]) <= 50.0) and np.all(np.abs(deltas[:, 0]) > 1e-3)
    assert len(np.unique(deltas[:, 0].round(3))) == N


@pytest.mark.parametrize("shape", SHAPES)
def test_contrast_scales_spread_and_keeps_channel_means(shape):
    batch = images(shape, low=50.0, high=200.0)
    _, mapped = run_both(make_augment_fn(AugmentConfig(contrast=(0.5, 0.5))), batch)
    axes = (1, 2)
    np.testing.assert_allclose(mapped.mean(axis=axes), batch.mean(axis=axes), atol=1e-2)
    np.testing.assert_allclose(mapped.std(axis=axes), 0.5 * batch.std(axis=axes), rtol=1e-3)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"flip_horizontal": 1.5}, "flip_horizontal"),
        ({"rotation": -0.1}, "rotation"),
        ({"zoom": 1.0}, "zoom"),
        ({"crop_padding": -1}, "crop_padding"),
        ({"brightness": -5.0}, "brightness"),
        ({"contrast": (-1.0, 1.0)}, "contrast"),
        ({"contrast": (1.5, 0.5)}, "contrast"),
        ({"cutout": 2.0}, "cutout"),
        ({"affine_fill": "wrap"}, "affine_fill"),
        ({"rotaton": 0.1}, "rotaton"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(options, field):
    with pytest.raises(ValidationError, match=field):
        AugmentConfig(**options)


def strong_config() -> AugmentConfig:
    return AugmentConfig(
        flip_horizontal=0.5,
        flip_vertical=0.2,
        rotation=0.2,
        zoom=0.3,
        translation=0.1,
        crop_padding=4,
        brightness=40.0,
        contrast=(0.6, 1.4),
        cutout=0.5,
        cutout_size=0.4,
    )


def test_enabled_ops_follow_registry_order():
    assert [name for name, _ in strong_config().enabled_ops()] == list(BATCH_OPS)


def test_scaled_zero_is_identity_and_half_halves_magnitudes():
    assert strong_config().scaled(0.0).is_identity()
    half = strong_config().scaled(0.5)
    assert (half.flip_horizontal, half.rotation, half.zoom) == pytest.approx((0.25, 0.1, 0.15))
    assert (half.brightness, half.crop_padding, half.cutout) == pytest.approx((20.0, 2, 0.25))
    assert half.contrast == pytest.approx((0.8, 1.2))
    assert half.affine_fill == strong_config().affine_fill


def test_scaled_caps_at_field_maxima_and_rejects_negative_strength():
    big = strong_config().scaled(10.0)
    assert (big.flip_horizontal, big.rotation, big.zoom, big.cutout) == (1.0, 0.5, 0.9, 1.0)
    assert big.contrast == pytest.approx((0.0, 5.0))
    with pytest.raises(ValueError, match="strength"):
        strong_config().scaled(-1.0)


# Batched augmentation: the same ops on whole batches, one seed per batch.
B = 64
BATCH_SEED = np.array([7, 11], np.int64)


def batch_images(shape, low: float = 0.0, high: float = 255.0) -> np.ndarray:
    return np.random.default_rng(3).uniform(low, high, (B, *shape)).astype(np.float32)


def run_batch_both(fn, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`fn(images, seed)` on the whole batch eagerly and inside Dataset.map, same seed."""
    eager = fn(tf.constant(batch), tf.constant(BATCH_SEED)).numpy()
    mapped = tf.data.Dataset.from_tensors((batch, BATCH_SEED)).map(fn)
    return eager, next(iter(mapped)).numpy()


def batch_fn(**options):
    return make_batch_augment_fn(AugmentConfig(**options))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op", list(STRONG))
def test_batch_strong_op_changes_images_same_eagerly_and_in_map(op, shape):
    batch = batch_images(shape)
    eager, mapped = run_batch_both(batch_fn(**STRONG[op]), batch)
    check_images(eager, batch)
    check_images(mapped, batch)
    np.testing.assert_allclose(eager, mapped, atol=1e-3)
    changed = np.abs(mapped - batch).max(axis=(1, 2, 3)) > 1e-3
    assert changed.mean() >= 0.8  # a crop shift of (0, 0) (1 in 81) leaves an image unchanged


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", list(BATCH_OPS))
def test_batch_disabled_op_leaves_images_unchanged(name, shape):
    batch = batch_images(shape)
    eager, mapped = run_batch_both(lambda x, s: BATCH_OPS[name](x, s, **OFF[name]), batch)
    np.testing.assert_allclose(eager, batch, atol=1e-3)
    np.testing.assert_allclose(mapped, batch, atol=1e-3)


def test_batch_identity_config_returns_images_unchanged():
    batch = tf.constant(batch_images((28, 28, 1)))
    assert make_batch_augment_fn(AugmentConfig())(batch, tf.constant(BATCH_SEED)) is batch


def test_batch_flips_match_tf_reverse_and_vary_per_image():
    batch = batch_images((32, 32, 3))
    _, mapped = run_batch_both(batch_fn(flip_horizontal=1.0), batch)
    np.testing.assert_array_equal(mapped, tf.reverse(batch, [2]).numpy())
    _, mapped = run_batch_both(batch_fn(flip_vertical=1.0), batch)
    np.testing.assert_array_equal(mapped, tf.reverse(batch, [1]).numpy())
    _, mapped = run_batch_both(batch_fn(flip_horizontal=0.5), batch)
    flipped = [
        np.array_equal(out, image[:, ::-1]) for out, image in zip(mapped, batch, strict=True)
    ]
    unchanged = [np.array_equal(out, image) for out, image in zip(mapped, batch, strict=True)]
    assert all(f or u for f, u in zip(flipped, unchanged, strict=True))
    assert 10 < sum(flipped) < B - 10  # each image draws its own coin


def test_batch_same_seed_same_batch_other_seed_other_batch():
    fn = batch_fn(rotation=0.1, crop_padding=2, brightness=20.0, cutout=0.5)
    batch = tf.constant(batch_images((28, 28, 1)))
    first, again = fn(batch, tf.constant([1, 2])), fn(batch, tf.constant([1, 2]))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, fn(batch, tf.constant([1, 3])))


@pytest.mark.parametrize("fill", ["reflect", "zeros"])
def test_batch_crop_equals_a_window_of_the_padded_image(fill):
    batch, pad = batch_images((28, 28, 3), low=10.0), 3
    _, mapped = run_batch_both(batch_fn(crop_padding=pad, crop_fill=fill), batch)
    mode = {"reflect": "reflect", "zeros": "constant"}[fill]
    shifts = set()
    for out, image in zip(mapped, batch, strict=True):
        padded = np.pad(image, [(pad, pad), (pad, pad), (0, 0)], mode=mode)
        windows = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if np.array_equal(out, padded[dy : dy + 28, dx : dx + 28])
        ]
        assert windows  # exactly what the per-image pad-then-crop can produce
        shifts.add(windows[0])
    assert len(shifts) > 10  # each image draws its own shift


def test_batch_affine_zoom_out_fills_borders_with_zeros_per_image():
    white = np.full((B, 28, 28, 1), 255.0, np.float32)
    _, mapped = run_batch_both(batch_fn(zoom=0.5, affine_fill="zeros"), white)
    means = mapped.mean(axis=(1, 2, 3))
    assert 10 < (means < 254.0).sum() < B - 10  # about half zoom out and show black borders
    assert len(np.unique(means.round(2))) > 10  # zoom factors differ between images
    _, mapped = run_batch_both(batch_fn(rotation=0.1, zoom=0.5), white)
    np.testing.assert_allclose(mapped, white, atol=1e-3)  # reflect fill keeps a flat image


def test_batch_brightness_shifts_each_image_by_one_delta():
    batch = batch_images((28, 28, 1), low=100.0, high=150.0)  # no clipping with delta <= 50
    _, mapped = run_batch_both(batch_fn(brightness=50.0), batch)
    deltas = (mapped - batch).reshape(B, -1)
    np.testing.assert_allclose(deltas, deltas[:, :1].repeat(deltas.shape[1], axis=1), atol=1e-3)
    assert np.all(np.abs(deltas[:, 0]) <= 50.0)
    assert len(np.unique(deltas[:, 0].round(3))) == B


@pytest.mark.parametrize("shape", SHAPES)
def test_batch_contrast_scales_spread_and_keeps_channel_means(shape):
    batch = batch_images(shape, low=50.0, high=200.0)
    _, mapped = run_batch_both(batch_fn(contrast=(0.5, 0.5)), batch)
    axes = (1, 2)
    np.testing.assert_allclose(mapped.mean(axis=axes), batch.mean(axis=axes), atol=1e-2)
    np.testing.assert_allclose(mapped.std(axis=axes), 0.5 * batch.std(axis=axes), rtol=1e-3)


def test_batch_cutout_erases_one_rectangle_per_image():
    batch = batch_images((32, 32, 3), low=10.0)
    _, mapped = run_batch_both(batch_fn(cutout=1.0, cutout_size=0.25, cutout_fill=0.0), batch)
    corners = set()
    for out, image in zip(mapped, batch, strict=True):
        erased = (out == 0.0).all(axis=-1)
        rows, cols = np.nonzero(erased.any(axis=1))[0], np.nonzero(erased.any(axis=0))[0]
        assert (len(rows), len(cols)) == (8, 8) and erased.sum() == 64  # a filled 8x8 block
        np.testing.assert_array_equal(out[~erased], image[~erased])
        corners.add((rows[0], cols[0]))
    assert len(corners) > 10  # each image draws its own rectangle
    _, mapped = run_batch_both(batch_fn(cutout=0.5), batch)
    erased = (mapped != batch).any(axis=(1, 2, 3))
    assert 10 < erased.sum() < B - 10
