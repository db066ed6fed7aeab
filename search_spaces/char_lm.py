"""Character language model whose default point is the tutorials' closing exercise.

Default: Embedding(vocab, 64) -> LSTM(256, one layer, all time steps) -> Dense(vocab, softmax),
Adam 1e-3: "given the previous characters, predict the next one; use an LSTM or GRU". Grown
to GRU/LSTM, 1-3 stacked layers, width, dropout between layers, embedding size and the shared
training levers (optimizer, learning-rate schedule). Objective: validation loss (nats per
character); `bits_per_char` is reported beside it.
"""

from __future__ import annotations

import math

import keras
import keras_tuner as kt

from search_spaces.base import SearchSpace, make_optimizer

CELLS = ("lstm", "gru")


@keras.saving.register_keras_serializable(package="harness")
def bits_per_char(y_true, y_pred):
    """Cross-entropy of the next character in bits (the LM literature's unit)."""
    nats = keras.losses.sparse_categorical_crossentropy(y_true, y_pred)
    return nats / math.log(2.0)


class CharLM(SearchSpace):
    """Embedding -> stacked LSTM/GRU over every position -> softmax over the characters."""

    tasks = ("char_lm",)
    metrics = ["bits_per_char"]

    def build(self, hp: kt.HyperParameters):
        from keras import layers

        vocab = self.meta.num_classes
        # Any length: trained on fixed windows, generation reads shorter contexts too.
        tokens = keras.Input(shape=(None,), dtype="int32", name="chars")
        x = layers.Embedding(vocab, hp.Choice("embedding_dim", [32, 64, 128, 256], default=64))(
            tokens
        )
        cell = hp.Choice("cell", list(CELLS), default="lstm")
        depth = hp.Int("rnn_layers", 1, 3, default=1)
        units = hp.Choice("units", [128, 256, 512], default=256)
        rate = hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.0)
        rnn_cls = layers.LSTM if cell == "lstm" else layers.GRU
        for _ in range(depth):
            x = rnn_cls(units, return_sequences=True)(x)
            if rate > 0:
                x = layers.Dropout(rate)(x)
        outputs = layers.Dense(vocab, activation="softmax", name="next_char")(x)
        model = keras.Model(tokens, outputs, name=f"char_{cell}")
        model.compile(
            optimizer=make_optimizer(hp, plan=self.training_plan),
            loss="sparse_categorical_crossentropy",
            metrics=[bits_per_char],
        )
        return model

    def extra_callbacks(self, log_dir: str) -> list:
        extra = self.meta.extra
        return [
            GeneratedText(
                log_dir,
                extra["vocabulary"],
                extra["prompts"],
                window=extra["sequence_length"],
                lowercase=extra.get("lowercase", False),
            )
        ]


class GeneratedText(keras.callbacks.Callback):
    """After each epoch, continues the seeded prompts (temperature 0.8, 80 characters) and
    writes them to TensorBoard as a text card `generated`. Sampling is the export's own graph
    function, compiled once: calling the model eagerly once per character cost ~40 s an epoch."""

    def __init__(
        self,
        log_dir: str,
        vocabulary: list[str],
        prompts: list[str],
        window: int,
        lowercase: bool = False,
        length: int = 80,
    ):
        super().__init__()
        self.log_dir, self.vocabulary, self.length = log_dir, vocabulary, length
        self.prompts, self.lowercase = prompts, lowercase
        self.window = window  # the context the model trained on, as the export uses it
        self._generate = None

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        lines = [
            f"**{prompt!r}** → {text!r}"
            for prompt, text in zip(self.prompts, self.sample(), strict=True)
        ]
        writer = tf.summary.create_file_writer(self.log_dir)
        with writer.as_default():
            tf.summary.text("generated", "\n\n".join(lines), step=epoch)
        writer.close()

    def sample(self, temperature: float = 0.8) -> list[str]:
        """The continuation of each prompt, drawn as `harness predict` draws from an export."""
        import tensorflow as tf

        from pipelines.char_lm_generate import generator

        if not self.prompts:  # a validation text without line starts to prompt from
            return []
        if self._generate is None:  # the model is set once fit starts
            generate, self._tables = generator(
                self.model, self.vocabulary, self.window, self.lowercase
            )
            self._generate = tf.function(generate)
        prompts = tf.constant(self.prompts, tf.string)
        out = self._generate(prompts, tf.constant(self.length), temperature)
        return [text.decode() for text in out["generated"].numpy()]
