"""Random image augmentation for tf.data training pipelines.

Every op takes one float32 image (H x W x C, C = 1 or 3, pixels in [0, 255], not normalized) and
a stateless seed (int32 tensor of shape [2]) and returns an image of the same shape and dtype in
[0, 255]. Ops use `tf.random.stateless_*` only: the same seed gives the same image eagerly and
inside `Dataset.map`, so a seeded pipeline is reproducible and tests can pin the randomness.
`make_augment_fn` draws a fresh seed per image when the caller passes none.

`make_batch_augment_fn` applies the same ops to a whole batch [B, H, W, C] with one seed, each
op drawing every image's parameters in one call. Pipelines use it: per-example `Dataset.map`
overhead costs more than the ops themselves on small images.

Ops run in this fixed order (the order of `OPS`):
flip_horizontal -> flip_vertical -> crop -> affine -> brightness -> contrast -> cutout.
Geometry comes before colour; cutout comes last so the erased rectangle keeps its exact fill
value. Rotation, zoom and translation are one `affine` op: one bilinear resample instead of
three, since each resample blurs the image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Literal

import tensorflow as tf
from pydantic import BaseModel, ConfigDict, Field, field_validator

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Fill = Literal["reflect", "zeros"]
_FILL_MODES = {"reflect": "REFLECT", "zeros": "CONSTANT"}


class AugmentConfig(BaseModel):
    """Which augmentations to apply and how strongly; every default means "off".

    Attributes:
        flip_horizontal: probability of a left-right flip.
        flip_vertical: probability of an up-down flip.
        rotation: max angle as a fraction of a full turn (Keras `RandomRotation` factor);
            0.5 allows any angle.
        zoom: max zoom fraction; the scale is drawn from [1 - zoom, 1 + zoom], in and out.
        translation: max shift as a fraction of height (rows) and width (columns).
        affine_fill: how rotation/zoom/translation fill pixels from outside the image.
        crop_padding: pixels padded on each side before cropping back to the original size.
        crop_fill: how the crop padding is filled; "reflect" needs padding < height and width.
        brightness: max delta added to every pixel, in pixel units.
        contrast: (lower, upper) range of the contrast factor; None is off.
        cutout: probability of erasing one rectangle.
        cutout_size: side of the rectangle as a fraction of height and width.
        cutout_fill: pixel value of the erased rectangle.
    """

    model_config = ConfigDict(extra="forbid")
    flip_horizontal: Probability = 0.0
    flip_vertical: Probability = 0.0
    rotation: float = Field(0.0, ge=0.0, le=0.5)
    zoom: float = Field(0.0, ge=0.0, le=0.9)
    translation: float = Field(0.0, ge=0.0, le=1.0)
    affine_fill: Fill = "reflect"
    crop_padding: int = Field(0, ge=0)
    crop_fill: Fill = "reflect"
    brightness: float = Field(0.0, ge=0.0, le=255.0)
    contrast: tuple[Annotated[float, Field(ge=0.0)], Annotated[float, Field(ge=0.0)]] | None = None
    cutout: Probability = 0.0
    cutout_size: float = Field(0.25, ge=0.0, le=1.0)
    cutout_fill: float = Field(0.0, ge=0.0, le=255.0)

    @field_validator("contrast")
    @classmethod
    def _lower_not_above_upper(
        cls, value: tuple[float, float] | None
    ) -> tuple[float, float] | None:
        if value is not None and value[0] > value[1]:
            raise ValueError(f"lower {value[0]} must not exceed upper {value[1]}")
        return value

    def enabled_ops(self) -> list[tuple[str, dict[str, Any]]]:
        """The ops this config turns on, in application order, with their `OPS` arguments."""
        affine = {"rotation": self.rotation, "zoom": self.zoom, "translation": self.translation}
        contrast = self.contrast or (1.0, 1.0)
        candidates = [
            ("flip_horizontal", self.flip_horizontal > 0, {"probability": self.flip_horizontal}),
            ("flip_vertical", self.flip_vertical > 0, {"probability": self.flip_vertical}),
            ("crop", self.crop_padding > 0, {"padding": self.crop_padding, "fill": self.crop_fill}),
            ("affine", any(v > 0 for v in affine.values()), {**affine, "fill": self.affine_fill}),
            ("brightness", self.brightness > 0, {"max_delta": self.brightness}),
            ("contrast", contrast != (1.0, 1.0), {"lower": contrast[0], "upper": contrast[1]}),
            ("cutout", self.cutout > 0 and self.cutout_size > 0, self._cutout_args()),
        ]
        return [(name, args) for name, enabled, args in candidates if enabled]

    def _cutout_args(self) -> dict[str, Any]:
        return dict(probability=self.cutout, size=self.cutout_size, fill_value=self.cutout_fill)

    def is_identity(self) -> bool:
        """True when no op is enabled, so augmentation can be skipped entirely."""
        return not self.enabled_ops()

    def scaled(self, strength: float) -> AugmentConfig:
        """This config with every probability and magnitude multiplied by `strength`.

        Lets a search space tune one "augmentation strength" hyperparameter: 0 turns everything
        off, 1 keeps the config. Values are capped at their field's maximum, `crop_padding` is
        rounded and the contrast range moves towards (or away from) the identity factor 1.
        Fill modes and fill values are kept.
        """
        if strength < 0:
            raise ValueError(f"strength must be >= 0, got {strength}")
        values = self.model_dump()
        for name, cap in _SCALED_CAPS.items():
            values[name] = min(values[name] * strength, cap)
        values["crop_padding"] = round(self.crop_padding * strength)
        if self.contrast is not None:
            values["contrast"] = tuple(max(0.0, 1.0 + (f - 1.0) * strength) for f in self.contrast)
        return AugmentConfig(**values)


# Upper bounds of the scaled fields, as in their Field constraints (validation catches drift).
_SCALED_CAPS = {
    "flip_horizontal": 1.0,
    "flip_vertical": 1.0,
    "rotation": 0.5,
    "zoom": 0.9,
    "translation": 1.0,
    "brightness": 255.0,
    "cutout": 1.0,
    "cutout_size": 1.0,
}


def _clip(image: tf.Tensor) -> tf.Tensor:
    return tf.clip_by_value(image, 0.0, 255.0)


def _coin(seed: tf.Tensor, probability: float) -> tf.Tensor:
    """A boolean scalar that is True with `probability` (uniform draws lie in [0, 1))."""
    return tf.random.stateless_uniform([], seed) < probability


def random_flip_horizontal(image: tf.Tensor, seed: tf.Tensor, probability: float) -> tf.Tensor:
    """Flips left-right with `probability`."""
    return tf.where(_coin(seed, probability), tf.image.flip_left_right(image), image)


def random_flip_vertical(image: tf.Tensor, seed: tf.Tensor, probability: float) -> tf.Tensor:
    """Flips up-down with `probability`."""
    return tf.where(_coin(seed, probability), tf.image.flip_up_down(image), image)


def random_crop_with_padding(
    image: tf.Tensor, seed: tf.Tensor, padding: int, fill: Fill = "reflect"
) -> tf.Tensor:
    """Pads `padding` pixels on each side, then crops a random window of the original size.

    The CIFAR trick: a random shift of up to `padding` pixels that keeps the image sharp.
    """
    mode = _FILL_MODES[fill]
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]], mode=mode)
    cropped = tf.image.stateless_random_crop(padded, tf.shape(image), seed)
    cropped.set_shape(image.shape)  # the crop size is dynamic; restore the static shape
    return cropped


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


def affine_transform(image: tf.Tensor, matrix: tf.Tensor, fill: Fill = "reflect") -> tf.Tensor:
    """Resamples `image` bilinearly through a 3x3 output-to-input (x=column, y=row) matrix."""
    transform = tf.reshape(matrix / matrix[2, 2], [-1])[:8]
    result = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform[None],
        output_shape=tf.shape(image)[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode=_FILL_MODES[fill],
    )[0]
    result.set_shape(image.shape)  # the output shape is dynamic; restore the static shape
    return _clip(result)


def _height_width(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    shape = tf.cast(tf.shape(image), tf.float32)
    return shape[0], shape[1]


def rotate(image: tf.Tensor, turns: float, fill: Fill = "reflect") -> tf.Tensor:
    """Rotates counter-clockwise by `turns` of a full turn (0.25 = 90 degrees)."""
    height, width = _height_width(image)
    return affine_transform(image, _rotation(turns, height, width), fill)


def random_affine(
    image: tf.Tensor,
    seed: tf.Tensor,
    rotation: float = 0.0,
    zoom: float = 0.0,
    translation: float = 0.0,
    fill: Fill = "reflect",
) -> tf.Tensor:
    """Random rotation, zoom and translation in one resample; see `AugmentConfig` for ranges."""
    height, width = _height_width(image)
    u = tf.random.stateless_uniform([4], seed, minval=-1.0, maxval=1.0)
    matrix = (
        _rotation(u[0] * rotation, height, width)
        @ _zoom(1.0 + u[1] * zoom, height, width)
        @ _translation(u[2] * translation * width, u[3] * translation * height)
    )
    return affine_transform(image, matrix, fill)


def random_brightness(image: tf.Tensor, seed: tf.Tensor, max_delta: float) -> tf.Tensor:
    """Adds one delta drawn from [-max_delta, max_delta] to every pixel."""
    delta = tf.random.stateless_uniform([], seed, minval=-max_delta, maxval=max_delta)
    return _clip(image + delta)


def random_contrast(image: tf.Tensor, seed: tf.Tensor, lower: float, upper: float) -> tf.Tensor:
    """Scales each channel's deviation from its mean by a factor drawn from [lower, upper]."""
    factor = tf.random.stateless_uniform([], seed, minval=lower, maxval=upper)
    return _clip(tf.image.adjust_contrast(image, factor))


def random_cutout(
    image: tf.Tensor,
    seed: tf.Tensor,
    probability: float,
    size: float = 0.25,
    fill_value: float = 0.0,
) -> tf.Tensor:
    """With `probability`, sets a rectangle of `size` x (height, width) to `fill_value`.

    The rectangle lies fully inside the image (random erasing), so every cutout erases the
    same area, unlike DeVries' cutout whose rectangle may hang over the border.
    """
    shape = tf.shape(image)
    u = tf.random.stateless_uniform([3], seed)
    rows = _window(u[0], shape[0], size)
    cols = _window(u[1], shape[1], size)
    inside = rows[:, None, None] & cols[None, :, None] & (u[2] < probability)
    return tf.where(inside, tf.cast(fill_value, image.dtype), image)


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
    """Shifts each image by a random whole number of pixels in [-padding, padding] per axis.

    Equal to `random_crop_with_padding` per image. Done with index gathers rather than a
    projective transform: its REFLECT repeats the edge pixel, while `tf.pad` does not.
    """
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


def batch_affine(
    images: tf.Tensor,
    seed: tf.Tensor,
    rotation: float = 0.0,
    zoom: float = 0.0,
    translation: float = 0.0,
    fill: Fill = "reflect",
) -> tf.Tensor:
    """Random rotation, zoom and translation per image, in one batched bilinear resample."""
    height, width = _height_width(images[0])
    u = _batch_uniform(images, seed, [4], minval=-1.0, maxval=1.0)
    matrices = (
        _rotation(u[:, 0] * rotation, height, width)
        @ _zoom(1.0 + u[:, 1] * zoom, height, width)
        @ _translation(u[:, 2] * translation * width, u[:, 3] * translation * height)
    )
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
    """With `probability` per image, sets a rectangle inside it to `fill_value` (see
    `random_cutout`)."""
    shape = tf.shape(images)
    u = _batch_uniform(images, seed, [3])
    rows = _window(u[:, 0], shape[1], size)
    cols = _window(u[:, 1], shape[2], size)
    inside = rows[:, :, None, None] & cols[:, None, :, None] & _per_image(u[:, 2] < probability)
    return tf.where(inside, tf.cast(fill_value, images.dtype), images)


Op = Callable[..., tf.Tensor]
# name -> op(image, seed, **arguments), in application order.
OPS: dict[str, Op] = {
    "flip_horizontal": random_flip_horizontal,
    "flip_vertical": random_flip_vertical,
    "crop": random_crop_with_padding,
    "affine": random_affine,
    "brightness": random_brightness,
    "contrast": random_contrast,
    "cutout": random_cutout,
}
# The same ops on whole batches: op(images, seed, **arguments).
BATCH_OPS: dict[str, Op] = {
    "flip_horizontal": batch_flip_horizontal,
    "flip_vertical": batch_flip_vertical,
    "crop": batch_crop_with_padding,
    "affine": batch_affine,
    "brightness": batch_brightness,
    "contrast": batch_contrast,
    "cutout": batch_cutout,
}


def _identity(image: tf.Tensor, seed: tf.Tensor | None = None) -> tf.Tensor:
    return image


def make_augment_fn(config: AugmentConfig) -> Callable[..., tf.Tensor]:
    """Composes the ops `config` enables into `augment(image, seed=None) -> image`.

    Use it per image, before batching, e.g. `ds.map(lambda x, y: (augment(x), y))`. Without
    `seed`, each call draws one from TF's global generator (set `tf.random.set_seed` to repeat
    a run); with a seed (int32 [2]) the result is fully determined. Each op gets its own seed
    split from it.
    """
    stages = [(OPS[name], arguments) for name, arguments in config.enabled_ops()]
    if not stages:
        return _identity

    def augment(image: tf.Tensor, seed: tf.Tensor | None = None) -> tf.Tensor:
        if seed is None:
            seed = tf.random.uniform([2], maxval=tf.int32.max, dtype=tf.int32)
        seeds = tf.random.split(seed, len(stages))
        for i, (op, arguments) in enumerate(stages):
            image = op(image, seeds[i], **arguments)
        return image

    return augment


def make_batch_augment_fn(config: AugmentConfig) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """Composes the batched ops `config` enables into `augment_batch(images, seed) -> images`.

    `images` is float32 [B, H, W, C] in [0, 255] (B may be dynamic); `seed` is an int32/int64
    tensor of shape [2], e.g. (run seed, batch index). Each image gets its own random
    parameters and the result is fully determined by the seed, eagerly and inside
    `Dataset.map`. Each op folds its position in `BATCH_OPS` into the seed, so turning one op
    on or off leaves the others' draws unchanged.
    """
    index = {name: k for k, name in enumerate(BATCH_OPS)}
    stages = [(index[name], BATCH_OPS[name], args) for name, args in config.enabled_ops()]
    if not stages:
        return _identity

    def augment_batch(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        for k, op, arguments in stages:
            images = op(images, tf.random.experimental.stateless_fold_in(seed, k), **arguments)
        return images

    return augment_batch
