"""Greedy decoding of a teacher-forced encoder-decoder, as a graph function for a SavedModel.

The model takes `(encoder ids, decoder ids)` and predicts the next target id at every decoder
position. Decoding starts the decoder with the start id and, `target_length` times, appends the
model's most likely next id; the output is each row's characters up to its first end id. Only
TensorFlow is needed to run it.
"""

from __future__ import annotations

from typing import Any

from pipelines.seq2seq import END, PAD, RESERVED, START, UNSEEN


def greedy_decoder(model: Any, vocabulary: list[str], input_length: int, target_length: int):
    import tensorflow as tf

    keys = tf.constant(vocabulary)
    values = tf.range(RESERVED, len(vocabulary) + RESERVED, dtype=tf.int64)
    to_id = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), UNSEEN)
    to_char = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(values, keys), "")

    def decode(text):
        chars = tf.strings.unicode_split(text, "UTF-8")[:, :input_length]
        encoder = tf.cast(to_id.lookup(chars).to_tensor(PAD, shape=[None, input_length]), tf.int32)
        batch = tf.shape(encoder)[0]
        decoder = tf.fill([batch, target_length], PAD)
        decoder = tf.tensor_scatter_nd_update(
            decoder,
            tf.stack([tf.range(batch), tf.zeros([batch], tf.int32)], 1),
            tf.fill([batch], START),
        )

        def step(t, decoder):
            probs = model([encoder, decoder], training=False)
            best = tf.cast(tf.argmax(probs[:, t], axis=-1), tf.int32)
            index = tf.stack([tf.range(batch), tf.fill([batch], t + 1)], 1)
            return t + 1, tf.tensor_scatter_nd_update(decoder, index, best)

        # Position t + 1 of the decoder input is the prediction at position t.
        _, decoder = tf.while_loop(lambda t, _: t < target_length - 1, step, [0, decoder])
        last = model([encoder, decoder], training=False)
        predicted = tf.cast(tf.argmax(last, axis=-1), tf.int64)  # (batch, target_length)
        # Keep each row up to (not including) its first end id.
        ended = tf.cumsum(tf.cast(tf.equal(predicted, END), tf.int32), axis=1) > 0
        kept = tf.where(ended | (predicted < RESERVED), tf.constant(-1, tf.int64), predicted)
        return {"decoded": tf.strings.reduce_join(to_char.lookup(kept), axis=1)}

    return decode, [to_id, to_char]
