"""Image CNN whose default point is the TensorFlow tutorial's Fashion-MNIST CNN.

Default: Conv32-Pool-Conv64-Pool-Conv64-Flatten-Dense64-Dropout0.5-Dense(classes), Adam 1e-3.
From there it grows in depth, filters, kernel size, batch norm, head and optimizer.
"""

from __future__ import annotations

import keras_tuner as kt

from search_spaces.base import SearchSpace, make_optimizer

MAX_CONV_LAYERS = 5
DEFAULT_FILTERS = (32, 64, 64, 128, 128)


class ImageCNN(SearchSpace):
    tasks = ("image_classification",)

    def build(self, hp: kt.HyperParameters):
        import keras
        from keras import layers

        inputs = keras.Input(shape=self.meta.input_shape, name="image")
        x = layers.Rescaling(1.0 / 255)(inputs)  # raw [0, 255] pixels in, so exports take them
        x = self._conv_stack(hp, x)
        x = self._head(hp, x)
        outputs = layers.Dense(self.meta.num_classes, activation="softmax", name="probs")(x)
        model = keras.Model(inputs, outputs, name="image_cnn")
        model.compile(
            optimizer=make_optimizer(hp),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model

    def _conv_stack(self, hp: kt.HyperParameters, x):
        from keras import layers

        depth = hp.Int("conv_layers", 2, MAX_CONV_LAYERS, default=3)
        kernel = hp.Choice("kernel_size", [3, 5], default=3)
        batch_norm = hp.Boolean("batch_norm", default=False)
        for i in range(depth):
            with hp.conditional_scope("conv_layers", list(range(i + 1, MAX_CONV_LAYERS + 1))):
                filters = hp.Choice(
                    f"filters_{i}", [16, 32, 64, 128, 256], default=DEFAULT_FILTERS[i]
                )
            # 'valid' like the tutorial while the map stays >= 3 wide; 'same' once it is small.
            padding = "valid" if x.shape[1] >= kernel + 2 else "same"
            x = layers.Conv2D(
                filters, kernel, padding=padding, activation=None if batch_norm else "relu"
            )(x)
            if batch_norm:
                x = layers.Activation("relu")(layers.BatchNormalization()(x))
            if i < depth - 1 and x.shape[1] >= 4:
                x = layers.MaxPooling2D()(x)
        return x

    def _head(self, hp: kt.HyperParameters, x):
        from keras import layers

        pooling = hp.Choice("head", ["flatten", "global_avg"], default="flatten")
        x = layers.Flatten()(x) if pooling == "flatten" else layers.GlobalAveragePooling2D()(x)
        x = layers.Dense(
            hp.Choice("dense_units", [32, 64, 128, 256], default=64), activation="relu"
        )(x)
        return layers.Dropout(hp.Float("dropout", 0.0, 0.6, step=0.1, default=0.5))(x)
