"""Random image augmentation for tf.data training pipelines: a job's `AugmentConfig` composed
into one function over the ops of `pipelines.augment_ops`.

`make_batch_augment_fn` works on a whole batch [B, H, W, C] with one seed; pipelines use it:
per-example `Dataset.map` overhead costs more than the ops themselves on small images.
`make_augment_fn` is the same on one image (a batch of one), drawing a fresh seed per image
when the caller passes none.

Importing this module imports no TensorFlow (job validation reads `AugmentConfig` through it);
the ops module is imported when a function is composed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipelines.augment_config import AugmentConfig

# AugmentConfig is re-exported: the image pipeline reads it from here.
__all__ = ["AugmentConfig", "make_augment_fn", "make_batch_augment_fn"]


def _identity(image: Any, seed: Any = None) -> Any:
    return image


def make_augment_fn(config: AugmentConfig) -> Callable[..., Any]:
    """Composes the ops `config` enables into `augment(image, seed=None) -> image` for one
    image [H, W, C]: the batched ops on a batch of one (one implementation of each op).

    Use it per image, before batching, e.g. `ds.map(lambda x, y: (augment(x), y))`. Without
    `seed`, each call draws one from TF's global generator (set `tf.random.set_seed` to repeat
    a run); with a seed (int32 [2]) the result is fully determined.
    """
    import tensorflow as tf

    augment_batch = make_batch_augment_fn(config)
    if augment_batch is _identity:
        return _identity

    def augment(image: tf.Tensor, seed: tf.Tensor | None = None) -> tf.Tensor:
        if seed is None:
            seed = tf.random.uniform([2], maxval=tf.int32.max, dtype=tf.int32)
        return augment_batch(image[None], seed)[0]

    return augment


def make_batch_augment_fn(config: AugmentConfig) -> Callable[[Any, Any], Any]:
    """Composes the batched ops `config` enables into `augment_batch(images, seed) -> images`.

    `images` is float32 [B, H, W, C] in [0, 255] (B may be dynamic); `seed` is an int32/int64
    tensor of shape [2], e.g. (run seed, batch index). Each image gets its own random
    parameters and the result is fully determined by the seed, eagerly and inside
    `Dataset.map`. Each op folds its position in `BATCH_OPS` into the seed, so turning one op
    on or off leaves the others' draws unchanged.
    """
    import tensorflow as tf

    from pipelines.augment_ops import BATCH_OPS

    index = {name: k for k, name in enumerate(BATCH_OPS)}
    stages = [(index[name], BATCH_OPS[name], args) for name, args in config.enabled_ops()]
    if not stages:
        return _identity

    def augment_batch(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        for k, op, arguments in stages:
            images = op(images, tf.random.experimental.stateless_fold_in(seed, k), **arguments)
        return images

    return augment_batch
