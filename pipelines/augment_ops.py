"""Random image augmentation ops (TensorFlow), on whole batches.

Every op takes a float32 batch [B, H, W, C] (C = 1 or 3, pixels in [0, 255], not normalized)
and a stateless seed (int32/int64 tensor of shape [2]) and returns a batch of the same shape in
[0, 255], each image with its own random parameters drawn in one stateless call: the same seed
gives the same batch eagerly and inside `Dataset.map`, so a seeded pipeline is reproducible and
tests can pin the randomness. One implementation: per-image augmentation
(`pipelines.augment.make_augment_fn`) runs these on a batch of one.

Ops run in this fixed order (the order of `BATCH_OPS`):
flip_horizontal -> flip_vertical -> crop -> affine -> brightness -> contrast -> cutout.
Geometry comes before colour; cutout comes last so the erased rectangle keeps its exact fill
value. Rotation, zoom and translation are one `affine` op: one bilinear resample instead of
three, since each resample blurs the image.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import tensorflow as tf

from pipelines.augment_config import Fill

_FILL_MODES = {"reflect": "REFLECT", "zeros": "CONSTANT"}


def _clip(image: tf.Tensor) -> tf.Tensor:
    return tf.clip_by_value(image, 0.0, 255.0)


def _about_center(matrix: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Conjugates 2x2 linear maps (any leading batch shape) so they act about the image center
    (pixel centers at integers)."""
    center = tf.stack([(width - 1.0) / 2.0, (height - 1.0) / 2.0])
    offset = center - tf.linalg.matvec(matrix, center)
    return _homogeneous(matrix, offset)


def _homogeneous(linear: tf.Tensor, offset: tf.Tensor) -> tf.Tensor:
    """3x3 matrices from [..., 2, 2] linear parts and [..., 2] offsets."""
    top = tf.concat([linear, offset[..., None]], axis=-1)
    bottom = tf.broadcast_to([[0.0, 0.0, 1.0]], tf.concat([tf.shape(top)[:-2], [1, 3]], 0))
    return tf.concat([top, bottom], axis=-2)


def _rotation(turns: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Output-to-input maps of counter-clockwise rotations by `turns` of a full turn."""
    angle = tf.cast(turns, tf.float32) * 2.0 * math.pi
    cos, sin = tf.cos(angle), tf.sin(angle)
    # Rows grow downwards, so the textbook counter-clockwise matrix turns points clockwise on
    # screen; used output-to-input, it turns the picture counter-clockwise (as `rot90` does).
    linear = tf.stack([tf.stack([cos, -sin], -1), tf.stack([sin, cos], -1)], -2)
    return _about_center(linear, height, width)


def _zoom(scale: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Output-to-input maps sampling `scale` times the area's side: > 1 zooms out, < 1 in."""
    return _about_center(tf.eye(2) * scale[..., None, None], height, width)


def _translation(dx: tf.Tensor, dy: tf.Tensor) -> tf.Tensor:
    """Output-to-input maps moving the picture right by `dx` and down by `dy` pixels."""
    linear = tf.broadcast_to(tf.eye(2), tf.concat([tf.shape(dx), [2, 2]], 0))
    return _homogeneous(linear, tf.stack([-dx, -dy], -1))


def _height_width(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    shape = tf.cast(tf.shape(image), tf.float32)
    return shape[0], shape[1]


def _window(u: tf.Tensor, length: tf.Tensor, size: float) -> tf.Tensor:
    """Boolean masks [..., length] per draw in `u`: a run of round(size * length) at a random
    start."""
    scaled_length = tf.round(size * tf.cast(length, tf.float32))
    run = tf.clip_by_value(tf.cast(scaled_length, tf.int32), 1, length)
    start = tf.cast(u * tf.cast(length - run + 1, tf.float32), tf.int32)  # u < 1: start fits
    start = start[..., None]  # one window per entry of `u`
    positions = tf.range(length)
    return (positions >= start) & (positions < start + run)


# Batched ops: the same semantics on a float32 batch [B, H, W, C], each drawing all its per-image
# randomness in one stateless call. Per-example maps cost more than the ops themselves, so
# pipelines augment whole batches.


def _batch_uniform(images: tf.Tensor, seed: tf.Tensor, shape: list[int], **range_) -> tf.Tensor:
    """Uniform draws of shape [B, *shape], one row per image."""
    return tf.random.stateless_uniform(tf.concat([tf.shape(images)[:1], shape], 0), seed, **range_)


def _per_image(values: tf.Tensor) -> tf.Tensor:
    """[B] values reshaped to broadcast against [B, H, W, C] images."""
    return values[:, None, None, None]


def batch_flip_horizontal(images: tf.Tensor, seed: tf.Tensor, probability: float) -> tf.Tensor:
    """Flips each image left-right with `probability`."""
    flip = _batch_uniform(images, seed, []) < probability
    return tf.where(_per_image(flip), tf.reverse(images, [2]), images)


def batch_flip_vertical(images: tf.Tensor, seed: tf.Tensor, probability: float) -> tf.Tensor:
    """Flips each image up-down with `probability`."""
    flip = _batch_uniform(images, seed, []) < probability
    return tf.where(_per_image(flip), tf.reverse(images, [1]), images)


def batch_crop_with_padding(
    images: tf.Tensor, seed: tf.Tensor, padding: int, fill: Fill = "reflect"
) -> tf.Tensor:
    """Shifts each image by a random whole number of pixels in [-padding, padding] per axis:
    the CIFAR trick (pad, then crop a window of the original size), sharp as the original.
    Done with index gathers rather than a projective transform: its REFLECT repeats the edge
    pixel, while `tf.pad` does not."""
    shifts = _batch_uniform(images, seed, [2], minval=-padding, maxval=padding + 1, dtype=tf.int32)
    shape = tf.shape(images)
    rows, row_inside = _shifted_indices(shifts[:, 0], shape[1], fill)
    cols, col_inside = _shifted_indices(shifts[:, 1], shape[2], fill)
    shifted = tf.gather(tf.gather(images, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    inside = row_inside[:, :, None, None] & col_inside[:, None, :, None]
    return tf.where(inside, shifted, tf.zeros_like(shifted))


def _shifted_indices(shift: tf.Tensor, length: tf.Tensor, fill: Fill) -> tuple[tf.Tensor, ...]:
    """Source indices [B, length] of a shift, and whether each lies inside the image."""
    source = tf.range(length)[None, :] + shift[:, None]
    inside = (source >= 0) & (source < length)
    if fill == "reflect":  # mirror about the edge pixel without repeating it, as `tf.pad` does
        source = tf.abs(source)
        source = tf.where(source >= length, 2 * (length - 1) - source, source)
        inside = tf.ones_like(inside)
    return tf.clip_by_value(source, 0, length - 1), inside


def affine(images: tf.Tensor, matrices: tf.Tensor, fill: Fill = "reflect") -> tf.Tensor:
    """Resamples each image bilinearly through its 3x3 output-to-input (x=column, y=row)
    matrix ([B, 3, 3], or one [3, 3] for all)."""
    matrices = tf.broadcast_to(matrices, tf.concat([tf.shape(images)[:1], [3, 3]], 0))
    transforms = tf.reshape(matrices / matrices[:, 2:, 2:], [-1, 9])[:, :8]
    result = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode=_FILL_MODES[fill],
    )
    result.set_shape(images.shape)  # the output shape is dynamic; restore the static shape
    return _clip(result)


def rotate(images: tf.Tensor, turns: float, fill: Fill = "reflect") -> tf.Tensor:
    """Rotates every image counter-clockwise by `turns` of a full turn (0.25 = 90 degrees)."""
    height, width = _height_width(images[0])
    return affine(images, _rotation(turns, height, width), fill)


def batch_affine(
    images: tf.Tensor,
    seed: tf.Tensor,
    rotation: float = 0.0,
    zoom: float = 0.0,
    translation: float = 0.0,
    fill: Fill = "reflect",
) -> tf.Tensor:
    """Random rotation, zoom and translation per image, in one batched bilinear resample;
    see `AugmentConfig` for the ranges."""
    height, width = _height_width(images[0])
    u = _batch_uniform(images, seed, [4], minval=-1.0, maxval=1.0)
    matrices = (
        _rotation(u[:, 0] * rotation, height, width)
        @ _zoom(1.0 + u[:, 1] * zoom, height, width)
        @ _translation(u[:, 2] * translation * width, u[:, 3] * translation * height)
    )
    return affine(images, matrices, fill)


def batch_brightness(images: tf.Tensor, seed: tf.Tensor, max_delta: float) -> tf.Tensor:
    """Adds to each image one delta drawn from [-max_delta, max_delta]."""
    delta = _batch_uniform(images, seed, [], minval=-max_delta, maxval=max_delta)
    return _clip(images + _per_image(delta))


def batch_contrast(images: tf.Tensor, seed: tf.Tensor, lower: float, upper: float) -> tf.Tensor:
    """Scales each image's per-channel deviation from its mean by a factor in [lower, upper]."""
    factor = _per_image(_batch_uniform(images, seed, [], minval=lower, maxval=upper))
    mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    return _clip((images - mean) * factor + mean)


def batch_cutout(
    images: tf.Tensor,
    seed: tf.Tensor,
    probability: float,
    size: float = 0.25,
    fill_value: float = 0.0,
) -> tf.Tensor:
    """With `probability` per image, sets a rectangle of `size` x (height, width) inside it to
    `fill_value` (random erasing: the rectangle lies fully inside, so every cutout erases the
    same area, unlike DeVries' cutout whose rectangle may hang over the border)."""
    shape = tf.shape(images)
    u = _batch_uniform(images, seed, [3])
    rows = _window(u[:, 0], shape[1], size)
    cols = _window(u[:, 1], shape[2], size)
    inside = rows[:, :, None, None] & cols[:, None, :, None] & _per_image(u[:, 2] < probability)
    return tf.where(inside, tf.cast(fill_value, images.dtype), images)


Op = Callable[..., tf.Tensor]
# name -> op(images, seed, **arguments), in application order.
BATCH_OPS: dict[str, Op] = {
    "flip_horizontal": batch_flip_horizontal,
    "flip_vertical": batch_flip_vertical,
    "crop": batch_crop_with_padding,
    "affine": batch_affine,
    "brightness": batch_brightness,
    "contrast": batch_contrast,
    "cutout": batch_cutout,
}
