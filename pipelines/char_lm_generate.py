"""Sampling text from a character language model, as a graph function for a SavedModel.

`generator(model, vocabulary, window, lowercase)` gives `generate(prompt, length, temperature)`
and the
lookup tables it uses (which the export must track): each prompt's characters become ids
(0 for a character the model never saw), then `length` times the model reads the last
`window` ids and the next id is drawn from its distribution sharpened by `temperature`.
Only TensorFlow is needed to run the exported function.
"""

from __future__ import annotations

from typing import Any


def start_id(vocabulary: list[str]) -> int:
    """What generation starts from before the prompt: a line break (or a space) if the corpus
    has one, as text does at the start of a line; else the first character."""
    for ch in ("\n", " "):
        if ch in vocabulary:
            return vocabulary.index(ch) + 1
    return 1


def generator(model: Any, vocabulary: list[str], window: int, lowercase: bool = False):
    import tensorflow as tf

    keys = tf.constant(vocabulary)
    values = tf.range(1, len(vocabulary) + 1, dtype=tf.int64)
    to_id = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), 0)
    to_char = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(values, keys), "")
    first = tf.constant([start_id(vocabulary)], tf.int64)

    def generate(prompt, length, temperature):
        temperature = tf.maximum(temperature, 1e-3)

        def one(text):
            if lowercase:  # as the corpus was
                text = tf.strings.lower(text, encoding="utf-8")
            ids = tf.concat([first, to_id.lookup(tf.strings.unicode_split(text, "UTF-8"))], 0)
            given = tf.shape(ids)[0]

            def step(i, ids):
                context = tf.cast(ids[-window:], tf.int32)[None, :]
                probs = model(context, training=False)[0, -1]
                logits = tf.math.log(probs + 1e-9) / temperature
                # Never index 0: it stands for "a character unseen in training".
                logits = tf.concat([[-1e9], logits[1:]], 0)[None, :]
                drawn = tf.random.categorical(logits, 1, dtype=tf.int64)[0]
                return i + 1, tf.concat([ids, drawn], 0)

            _, ids = tf.while_loop(
                lambda i, _: i < length,
                step,
                [tf.constant(0), ids],
                shape_invariants=[tf.TensorShape([]), tf.TensorShape([None])],
            )
            return tf.strings.reduce_join(to_char.lookup(ids[given:]))

        return {"generated": tf.map_fn(one, prompt, fn_output_signature=tf.string)}

    return generate, [to_id, to_char]
