"""Text RNN whose default point is the TensorFlow tutorial's IMDB LSTM.

Default: Embedding(vocab, 128, mask_zero=True)-LSTM64-Dropout0.5-Dense(classes), Adam 1e-3.
From there it varies the cell, direction, depth, width, dropouts, head and optimizer. Token id 0
is padding: the Embedding masks it, so neither the recurrent stack nor a pooling head sees it.
"""

from __future__ import annotations

import keras_tuner as kt

from harness.errors import UserError
from pipelines.base import DataMeta
from search_spaces.base import SearchSpace, make_optimizer

CELLS = ("simple_rnn", "lstm", "gru")
HEADS = ("last", "max_pool", "avg_pool")


class TextRNN(SearchSpace):
    """Embedding -> stacked (bidirectional) RNN -> last step or pooled over time -> softmax.

    Args:
        meta: The text pipeline's description; `extra["vocab_size"]` sizes the embedding.
        max_rnn_layers: The deepest stack the search may try.
    """

    tasks = ("text_classification",)
    metrics = ["accuracy"]

    def __init__(self, meta: DataMeta, max_rnn_layers: int = 3):
        _check_max_rnn_layers(max_rnn_layers)
        super().__init__(meta, max_rnn_layers=max_rnn_layers)
        self.max_rnn_layers = max_rnn_layers

    def build(self, hp: kt.HyperParameters):
        import keras
        from keras import layers

        # int64 is what TextVectorization emits, so batches go in without a cast.
        tokens = keras.Input(shape=self.meta.input_shape, dtype="int64", name="tokens")
        x = layers.Embedding(
            self.meta.extra["vocab_size"],
            hp.Choice("embedding_dim", [64, 128, 256], default=128),
            mask_zero=True,
        )(tokens)
        head = hp.Choice("head", list(HEADS), default="last")
        x = self._rnn_stack(hp, x, return_sequences=head != "last")
        x = _pool_over_time(head, x, tokens)
        rate = hp.Float("dropout", 0.0, 0.6, step=0.1, default=0.5)
        if rate > 0:
            x = layers.Dropout(rate)(x)
        outputs = layers.Dense(self.meta.num_classes, activation="softmax", name="probs")(x)
        model = keras.Model(tokens, outputs, name="text_rnn")
        model.compile(
            optimizer=make_optimizer(hp),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model

    def _rnn_stack(self, hp: kt.HyperParameters, x, return_sequences: bool):
        """`rnn_layers` recurrent layers; the last returns sequences only for a pooling head."""
        from keras import layers

        cell = hp.Choice("cell", list(CELLS), default="lstm")
        bidirectional = hp.Boolean("bidirectional", default=False)
        depth = hp.Int("rnn_layers", 1, self.max_rnn_layers, default=1)
        units = hp.Choice("units", [32, 64, 128], default=64)
        recurrent_dropout = hp.Float("recurrent_dropout", 0.0, 0.4, step=0.1, default=0.0)
        rnn_cls = {"simple_rnn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}[cell]
        for i in range(depth):
            rnn = rnn_cls(
                units,
                recurrent_dropout=recurrent_dropout,
                return_sequences=return_sequences or i < depth - 1,
            )
            x = (layers.Bidirectional(rnn) if bidirectional else rnn)(x)
        return x


def _check_max_rnn_layers(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"search_space.options.max_rnn_layers: expected an integer, got {value!r}")
    if value < 1:
        raise UserError(
            f"search_space.options.max_rnn_layers: a stacked RNN needs at least 1 layer, "
            f"got {value}"
        )


def _pool_over_time(head: str, x, tokens):
    """The RNN's outputs -> one vector per example, over real tokens only ("last": as is).

    Plain ops on the token mask rather than Keras's pooling layers: GlobalMaxPooling1D ignores
    masks, and GlobalAveragePooling1D gives NaN (so a NaN loss) for a row of only padding.
    """
    from keras import ops

    if head == "last":
        return x  # a masked RNN's last output is the one after the last real token
    real = ops.expand_dims(ops.not_equal(tokens, 0), -1)
    if head == "max_pool":
        # The cells' tanh outputs are >= -1, so a padded step set to -1 never beats a real one.
        return ops.max(ops.where(real, x, -1.0), axis=1)
    count = ops.sum(ops.cast(real, x.dtype), axis=1)
    return ops.sum(ops.where(real, x, 0.0), axis=1) / ops.maximum(count, 1.0)
