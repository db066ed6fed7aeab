"""Classifier of 1-D signals and feature sequences `(length, channels)`: Conv1D, GRU or MLP.

The `family` hyperparameter picks the body after the input normalisation (the training split's
per-channel mean and variance, from the pipeline, so exported models take raw values):
- "conv1d" (the default): blocks of Conv1D (+ batch norm) + ReLU, each halving the length with
  a max-pool, then a global average or max over time. The default point, 3 blocks of 64 filters
  with kernel 5 and batch norm, is the small CNN that 1-D benchmarks (MNIST-1D) start from;
- "gru": a recurrent stack (GRU or LSTM, optionally bidirectional) read at the last step;
- "mlp": the sequence flattened into dense layers, for tabular rows given as `(N, 1, F)`.
Shared levers: dropout before the softmax, optimizer, learning-rate schedule, weight decay,
label smoothing (`search_spaces.base`).
"""

from __future__ import annotations

import functools

import keras_tuner as kt

from pipelines.base import DataMeta
from search_spaces.base import SearchSpace, batch_normalization, build_branch, softmax_classifier

FAMILIES = ("conv1d", "gru", "mlp")


class SequenceClassifier(SearchSpace):
    """Normalisation -> one family's body -> dropout -> softmax.

    Args:
        meta: The sequence pipeline's description; `extra["mean"]` / `extra["variance"]` (per
            channel, training split) set the normalisation.
    """

    tasks = ("sequence_classification",)
    metrics = ["accuracy"]

    def __init__(self, meta: DataMeta):
        super().__init__(meta)

    def build(self, hp: kt.HyperParameters):
        import keras
        from keras import layers

        inputs = keras.Input(shape=self.meta.input_shape, name="inputs")
        x = layers.Normalization(
            axis=-1, mean=self.meta.extra["mean"], variance=self.meta.extra["variance"]
        )(inputs)
        bodies = {"conv1d": _conv1d_body, "gru": _gru_body, "mlp": _mlp_body}
        hp.Choice("family", list(FAMILIES), default="conv1d")
        x = build_branch(
            hp, "family", {name: functools.partial(body, hp, x) for name, body in bodies.items()}
        )
        rate = hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.2)
        if rate > 0:
            x = layers.Dropout(rate)(x)
        name = f"sequence_{hp.get('family')}"
        return softmax_classifier(inputs, x, self.meta.num_classes, name, hp, self.training_plan)


def _conv1d_body(hp: kt.HyperParameters, x):
    from keras import layers

    blocks = hp.Int("conv_blocks", 1, 4, default=3)
    filters = hp.Choice("conv_filters", [32, 64, 128], default=64)
    kernel = hp.Choice("conv_kernel_size", [3, 5, 7], default=5)
    batch_norm = hp.Boolean("batch_norm", default=True)
    for _ in range(blocks):
        x = layers.Conv1D(filters, kernel, padding="same", use_bias=not batch_norm)(x)
        if batch_norm:
            x = batch_normalization()(x)
        x = layers.ReLU()(x)
        if x.shape[1] is not None and x.shape[1] >= 2:  # a length-1 input cannot be halved
            x = layers.MaxPooling1D(2)(x)
    pool = hp.Choice("conv_pooling", ["avg", "max"], default="avg")
    return (layers.GlobalAveragePooling1D() if pool == "avg" else layers.GlobalMaxPooling1D())(x)


def _gru_body(hp: kt.HyperParameters, x):
    from keras import layers

    cell = hp.Choice("cell", ["gru", "lstm"], default="gru")
    depth = hp.Int("rnn_layers", 1, 2, default=1)
    units = hp.Choice("units", [32, 64, 128], default=64)
    bidirectional = hp.Boolean("bidirectional", default=False)
    rnn = layers.GRU if cell == "gru" else layers.LSTM
    for i in range(depth):
        layer = rnn(units, return_sequences=i < depth - 1)
        x = layers.Bidirectional(layer)(x) if bidirectional else layer(x)
    return x


def _mlp_body(hp: kt.HyperParameters, x):
    from keras import layers

    depth = hp.Int("dense_layers", 1, 3, default=2)
    units = hp.Choice("dense_units", [64, 128, 256], default=128)
    x = layers.Flatten()(x)
    for _ in range(depth):
        x = layers.Dense(units, activation="relu")(x)
    return x
