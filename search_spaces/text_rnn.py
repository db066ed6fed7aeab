"""Text classifiers whose default point is the TensorFlow tutorial's IMDB LSTM.

Default: Embedding(vocab, 128, mask_zero=True)-LSTM64-Dropout0.5-Dense(classes), Adam 1e-3.
The `family` hyperparameter picks the body between the embedding and the softmax:
- "rnn" (the default): cell, direction, depth, width, recurrent dropout and head vary;
- "pooled": fastText-style average and/or max of the token embeddings (with the pipeline's
  `ngrams: 2`, of unigrams and bigrams), cheap and strong on long reviews;
- "conv1d": one Conv1D over the embeddings (kernel 3-7) and a max over time.
Each family's hyperparameters live in its own conditional scope; `family` is recorded with
every trial, so results can be grouped by it. Token id 0 is padding: the RNN's Embedding masks
it, and every pooling is taken over real tokens only. Shared levers: embedding size, dropout
before the softmax, optimizer, learning-rate schedule, weight decay, label smoothing.
"""

from __future__ import annotations

import functools

import keras_tuner as kt

from harness_core.errors import UserError
from pipelines.base import DataMeta
from search_spaces.base import SearchSpace, build_branch, softmax_classifier

CELLS = ("simple_rnn", "lstm", "gru")
HEADS = ("last", "max_pool", "avg_pool")
FAMILIES = ("rnn", "pooled", "conv1d")
POOLINGS = ("avg", "max", "avg_max")


class TextRNN(SearchSpace):
    """Embedding -> one family's body (RNN, pooled embeddings or Conv1D) -> dropout -> softmax.

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
        family = hp.Choice("family", list(FAMILIES), default="rnn")
        x = layers.Embedding(
            self.meta.extra["vocab_size"],
            hp.Choice("embedding_dim", [64, 128, 256], default=128),
            # Only recurrent layers read Keras masks; the other bodies mask by token id.
            mask_zero=family == "rnn",
        )(tokens)
        bodies = {"rnn": self._rnn_body, "pooled": _pooled_body, "conv1d": _conv1d_body}
        x = build_branch(
            hp,
            "family",
            {name: functools.partial(body, hp, x, tokens) for name, body in bodies.items()},
        )
        rate = hp.Float("dropout", 0.0, 0.6, step=0.1, default=0.5)
        if rate > 0:
            x = layers.Dropout(rate)(x)
        name = f"text_{family}"
        return softmax_classifier(tokens, x, self.meta.num_classes, name, hp, self.training_plan)

    def _rnn_body(self, hp: kt.HyperParameters, x, tokens):
        """Stacked RNN, then its last output or a pooling of its outputs over time."""
        head = hp.Choice("head", list(HEADS), default="last")
        x = self._rnn_stack(hp, x, return_sequences=head != "last")
        return _pool_over_time(head, x, tokens)

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


def _pooled_body(hp: kt.HyperParameters, x, tokens):
    """fastText-style: the embeddings' average and/or max over real tokens."""
    from keras import ops

    pooling = hp.Choice("pooling", list(POOLINGS), default="avg")
    real = _real_tokens(tokens)
    pools = {"avg": _masked_mean, "max": _masked_max}
    pooled = [pools[name](x, real) for name in pooling.split("_")]  # "avg_max" -> both
    return pooled[0] if len(pooled) == 1 else ops.concatenate(pooled, axis=-1)


def _conv1d_body(hp: kt.HyperParameters, x, tokens):
    """One Conv1D over the embeddings ('same' padding keeps one output per token), then the
    max over real tokens: which n-gram detectors fired anywhere in the text."""
    from keras import layers, ops

    real = _real_tokens(tokens)
    # Zero vectors at padding, like the conv's own 'same' padding: windows at a text's end
    # then read the same whatever the sequence length it was padded to.
    x = ops.where(real, x, 0.0)
    x = layers.Conv1D(
        hp.Choice("conv_filters", [64, 128, 256], default=128),
        hp.Choice("conv_kernel_size", [3, 5, 7], default=5),
        padding="same",
        activation="relu",
    )(x)
    return _masked_max(x, real)


def _pool_over_time(head: str, x, tokens):
    """The RNN's outputs -> one vector per example, over real tokens only ("last": as is)."""
    if head == "last":
        return x  # a masked RNN's last output is the one after the last real token
    pool = _masked_max if head == "max_pool" else _masked_mean
    return pool(x, _real_tokens(tokens))


# Plain ops on the token mask rather than Keras's pooling layers: GlobalMaxPooling1D ignores
# masks, and GlobalAveragePooling1D gives NaN (so a NaN loss) for a row of only padding.
def _real_tokens(tokens):
    """(batch, time, 1) booleans: True where the token is not padding (id 0)."""
    from keras import ops

    return ops.expand_dims(ops.not_equal(tokens, 0), -1)


def _masked_mean(x, real):
    from keras import ops

    count = ops.sum(ops.cast(real, x.dtype), axis=1)
    return ops.sum(ops.where(real, x, 0.0), axis=1) / ops.maximum(count, 1.0)


def _masked_max(x, real):
    """Max over real steps; 0 for a row of only padding (an empty text), never -1e9."""
    from keras import ops

    # Embeddings and conv outputs are unbounded, so padding gets a value no real step reaches.
    top = ops.max(ops.where(real, x, -1e9), axis=1)
    return ops.where(ops.any(real, axis=1), top, 0.0)
