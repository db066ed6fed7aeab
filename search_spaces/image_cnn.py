"""Image CNN whose default point is the TensorFlow tutorial's Fashion-MNIST CNN.

Default: Conv32-Pool-Conv64-Pool-Conv64-Flatten-Dense64-Dropout0.5-Dense(classes), Adam 1e-3.
Two families of conv body share the head and the training levers:
- "plain" (the default): the tutorial's stack, grown in depth, filters, kernel size, batch norm;
- "vgg": 2-3 blocks of two 3x3 'same' convs with batch norm, max pooling and dropout, filters
  doubling per block from `vgg_filters` (on Fashion-MNIST a 4-conv batch-norm stack like this
  reached 92.4% where the tutorial CNN stops at ~90%).
Training levers: optimizer with per-optimizer learning-rate ranges, AdamW weight decay, constant /
cosine-with-warm-up / one-cycle schedule over the engine's training plan, label smoothing.
"""

from __future__ import annotations

import keras_tuner as kt

from search_spaces.base import SearchSpace, batch_normalization, build_branch, softmax_classifier

MAX_CONV_LAYERS = 5
DEFAULT_FILTERS = (32, 64, 64, 128, 128)
FAMILIES = ("plain", "vgg")


class ImageCNN(SearchSpace):
    """Rescale -> conv body of one `family` -> flatten or global-average head -> softmax."""

    tasks = ("image_classification",)

    def build(self, hp: kt.HyperParameters):
        import keras
        from keras import layers

        inputs = keras.Input(shape=self.meta.input_shape, name="image")
        x = layers.Rescaling(1.0 / 255)(inputs)  # raw [0, 255] pixels in, so exports take them
        hp.Choice("family", list(FAMILIES), default="plain")
        # Each family's hyperparameters live in its own scope: the oracle samples only those
        # of the family a trial uses.
        x = build_branch(
            hp, "family", {"plain": lambda: self._conv_stack(hp, x), "vgg": lambda: _vgg(hp, x)}
        )
        x = self._head(hp, x)
        return softmax_classifier(
            inputs, x, self.meta.num_classes, "image_cnn", hp, self.training_plan
        )

    def _conv_stack(self, hp: kt.HyperParameters, x):
        from keras import layers

        depth = hp.Int("conv_layers", 2, MAX_CONV_LAYERS, default=3)
        kernel = hp.Choice("kernel_size", [3, 5], default=3)
        batch_norm = hp.Boolean("batch_norm", default=False)
        widths = []
        for i in range(MAX_CONV_LAYERS):  # all, so deeper layers' scopes are seen (inactive)
            with hp.conditional_scope("conv_layers", list(range(i + 1, MAX_CONV_LAYERS + 1))):
                widths.append(
                    hp.Choice(f"filters_{i}", [16, 32, 64, 128, 256], default=DEFAULT_FILTERS[i])
                )
        for i, filters in enumerate(widths[:depth]):
            # 'valid' like the tutorial while the map stays >= 3 wide; 'same' once it is small
            # (or thin: a 1-pixel-wide "image" of a 1-D signal).
            padding = "valid" if min(x.shape[1:3]) >= kernel + 2 else "same"
            x = layers.Conv2D(
                filters, kernel, padding=padding, activation=None if batch_norm else "relu"
            )(x)
            if batch_norm:
                x = layers.Activation("relu")(batch_normalization()(x))
            if i < depth - 1 and max(x.shape[1:3]) >= 4:
                x = layers.MaxPooling2D(_pool_size(x, 4))(x)
        return x

    def _head(self, hp: kt.HyperParameters, x):
        from keras import layers

        pooling = hp.Choice("head", ["flatten", "global_avg"], default="flatten")
        x = layers.Flatten()(x) if pooling == "flatten" else layers.GlobalAveragePooling2D()(x)
        x = layers.Dense(
            hp.Choice("dense_units", [32, 64, 128, 256], default=64), activation="relu"
        )(x)
        return layers.Dropout(hp.Float("dropout", 0.0, 0.6, step=0.1, default=0.5))(x)


def _vgg(hp: kt.HyperParameters, x):
    """Blocks of two 3x3 'same' convs (batch norm, ReLU), then max pool and dropout."""
    from keras import layers

    blocks = hp.Int("vgg_blocks", 2, 3, default=3)
    base = hp.Choice("vgg_filters", [32, 48, 64, 96, 128], default=32)
    rate = hp.Choice("vgg_dropout", [0.0, 0.1, 0.2, 0.3], default=0.2)
    for i in range(blocks):
        for _ in range(2):
            # No bias: the batch norm's shift that follows makes it redundant.
            x = layers.Conv2D(base * 2**i, 3, padding="same", use_bias=False)(x)
            x = layers.Activation("relu")(batch_normalization()(x))
        if max(x.shape[1:3]) >= 2:
            x = layers.MaxPooling2D(_pool_size(x, 2))(x)
        if rate > 0:
            x = layers.Dropout(rate)(x)
    return x


def _pool_size(x, smallest: int) -> tuple[int, int]:
    """Halve each spatial axis that is at least `smallest` long; keep a short one (a 1-D
    signal laid out as an L x 1 image keeps its width of 1)."""
    return tuple(2 if size >= smallest else 1 for size in x.shape[1:3])
