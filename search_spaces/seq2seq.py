"""Encoder-decoder whose default point is the tutorials' sequence-to-sequence LSTM.

Default: characters -> Embedding(64) -> LSTM(128) encoder whose final state (h, c) starts an
LSTM(128) decoder over Embedding(64) of the (teacher-forced) target -> Dense(vocab, softmax),
Adam 1e-3. Grown to GRU, a bidirectional encoder (its two directions' states concatenated, so
the decoder is twice as wide), width, embedding size, dropout and the shared training levers.
Objective: `val_sequence_accuracy`, the share of pairs whose whole target is right (padding
ignored). With teacher forcing, every position right is exactly "greedy decoding gives the
target": each step then conditions on the same prefix.
"""

from __future__ import annotations

import keras
import keras_tuner as kt

from search_spaces.base import SearchSpace, make_optimizer

CELLS = ("lstm", "gru")


@keras.saving.register_keras_serializable(package="harness")
def sequence_accuracy(y_true, y_pred):
    """1 for a pair whose every non-padding target position is predicted right, else 0."""
    from keras import ops

    predicted = ops.cast(ops.argmax(y_pred, axis=-1), y_true.dtype)
    right = ops.logical_or(ops.equal(predicted, y_true), ops.equal(y_true, 0))
    return ops.cast(ops.all(right, axis=-1), "float32")


@keras.saving.register_keras_serializable(package="harness")
def token_accuracy(y_true, y_pred):
    """Share of non-padding target positions predicted right (per pair)."""
    from keras import ops

    predicted = ops.cast(ops.argmax(y_pred, axis=-1), y_true.dtype)
    real = ops.cast(ops.not_equal(y_true, 0), "float32")
    right = ops.cast(ops.equal(predicted, y_true), "float32") * real
    return ops.sum(right, axis=-1) / ops.maximum(ops.sum(real, axis=-1), 1.0)


class Seq2Seq(SearchSpace):
    tasks = ("seq2seq",)
    metrics = ["sequence_accuracy", "token_accuracy"]

    def build(self, hp: kt.HyperParameters):
        from keras import layers

        vocab = self.meta.num_classes
        cell = hp.Choice("cell", list(CELLS), default="lstm")
        units = hp.Choice("units", [64, 128, 256], default=128)
        embed = hp.Choice("embedding_dim", [32, 64, 128], default=64)
        bidirectional = hp.Boolean("bidirectional", default=False)
        rate = hp.Float("dropout", 0.0, 0.4, step=0.1, default=0.0)
        rnn_cls = layers.LSTM if cell == "lstm" else layers.GRU

        source = keras.Input(shape=(None,), dtype="int32", name="source")
        target_in = keras.Input(shape=(None,), dtype="int32", name="target_in")
        x = layers.Embedding(vocab, embed, mask_zero=True, name="source_embedding")(source)
        encoder = rnn_cls(units, return_state=True, dropout=rate, name="encoder")
        if bidirectional:
            outputs = layers.Bidirectional(encoder, name="bi_encoder")(x)
            states = _merge_directions(outputs[1:], cell)
            decoder_units = 2 * units
        else:
            states = list(encoder(x)[1:])
            decoder_units = units
        y = layers.Embedding(vocab, embed, name="target_embedding")(target_in)
        y = rnn_cls(decoder_units, return_sequences=True, dropout=rate, name="decoder")(
            y, initial_state=states
        )
        outputs = layers.Dense(vocab, activation="softmax", name="next_char")(y)
        model = keras.Model([source, target_in], outputs, name=f"seq2seq_{cell}")
        model.compile(
            optimizer=make_optimizer(hp, plan=self.training_plan),
            loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=0),
            metrics=[sequence_accuracy, token_accuracy],
        )
        return model

    def extra_callbacks(self, log_dir: str) -> list:
        return [DecodedSamples(log_dir, self.meta.extra["vocabulary"], self.meta.extra["samples"])]


def _merge_directions(states: list, cell: str) -> list:
    """A bidirectional encoder's final states -> the decoder's initial state: forward and
    backward concatenated (h with h, c with c for an LSTM)."""
    from keras import layers

    if cell == "lstm":
        forward_h, forward_c, backward_h, backward_c = states
        return [
            layers.Concatenate()([forward_h, backward_h]),
            layers.Concatenate()([forward_c, backward_c]),
        ]
    forward, backward = states
    return [layers.Concatenate()([forward, backward])]


class DecodedSamples(keras.callbacks.Callback):
    """After each epoch, greedily decodes a few validation inputs and writes input, predicted
    and expected outputs to TensorBoard as a text card `decoded`."""

    def __init__(self, log_dir: str, vocabulary: list[str], samples: list):
        super().__init__()
        self.log_dir, self.vocabulary, self.samples = log_dir, vocabulary, samples

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        from pipelines.seq2seq_decode import greedy_decoder

        n_in = max(len(a) for a, _ in self.samples)
        n_out = max(len(b) for _, b in self.samples) + 1
        decode, _ = greedy_decoder(self.model, self.vocabulary, n_in, n_out)
        got = decode(tf.constant([a for a, _ in self.samples]))["decoded"].numpy()
        lines = ["| input | predicted | expected |", "|---|---|---|"]
        for (source, expected), predicted in zip(self.samples, got, strict=True):
            mark = "" if predicted.decode() == expected else " ✗"
            lines.append(f"| `{source}` | `{predicted.decode()}`{mark} | `{expected}` |")
        writer = tf.summary.create_file_writer(self.log_dir)
        with writer.as_default():
            tf.summary.text("decoded", "\n".join(lines), step=epoch)
        writer.close()
