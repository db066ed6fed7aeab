"""Character language model: the pipeline's windows and vocabulary, the space's default point
(the exercise's model), every branch trains, and generation from raw strings."""

from __future__ import annotations

import ast

import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf

from harness.errors import UserError
from pipelines.char_lm import CharLMConfig, CharLMPipeline
from pipelines.char_lm_generate import generator
from search_spaces.char_lm import CharLM

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(60))


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT + "Zebra!")  # 'Z' and '!' only in the test part
    return path


def pipeline(corpus, **options) -> CharLMPipeline:
    return CharLMPipeline(CharLMConfig(files=[str(corpus)], sequence_length=20, **options))


def test_parts_vocabulary_and_shifted_targets(corpus):
    p = pipeline(corpus, batch_size=4)
    p.check_available()
    meta = p.describe()
    assert "Z" not in p.vocabulary and "!" not in p.vocabulary  # training part only
    assert meta.num_classes == len(p.vocabulary) + 1 and meta.input_shape == (20,)
    n = len(TEXT) + 6
    n_test, n_val = int(n * 0.05), int(n * 0.1)  # the default fractions, from the end
    assert (meta.num_test, meta.num_validation) == ((n_test - 1) // 20, (n_val - 1) // 20)
    assert meta.num_train == (n - n_test - n_val - 1) // 20
    x, y = next(iter(p.train_data().train))
    assert x.shape == (4, 20) and y.shape == (4, 20)
    np.testing.assert_array_equal(x.numpy()[:, 1:], y.numpy()[:, :-1])  # next character
    test_ids = np.concatenate([y.numpy().ravel() for _, y in p.test_data()])
    assert 0 in test_ids  # unseen characters map to index 0
    assert 0 < meta.baselines["unigram"]["bits_per_char"] < np.log2(meta.num_classes) + 1
    assert meta.extra["prompts"] and all(meta.extra["prompts"])


def test_too_little_text_is_named(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("abc" * 10)
    with pytest.raises(UserError, match="fewer than one window of sequence_length 20"):
        pipeline(path).check_available()
    with pytest.raises(UserError, match="no such file"):
        pipeline(tmp_path / "nope.txt").check_available()
    with pytest.raises(UserError) as caught:  # an IsADirectoryError's traceback before
        pipeline(tmp_path).check_available()
    assert str(caught.value) == f"data.files: {tmp_path} is a folder; list its files"


def test_a_byte_order_mark_is_not_learned_as_a_character(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_text("\ufeff" + TEXT)
    assert "\ufeff" not in pipeline(path).vocabulary


def summary(model) -> list[tuple[str, tuple]]:
    return [(type(layer).__name__, tuple(layer.output.shape[1:])) for layer in model.layers]


def test_default_point_is_the_exercise_model(corpus):
    meta = pipeline(corpus).describe()
    model = CharLM(meta).build(kt.HyperParameters())
    vocab = meta.num_classes
    assert summary(model) == [
        ("InputLayer", (None,)),
        ("Embedding", (None, 64)),
        ("LSTM", (None, 256)),
        ("Dense", (None, vocab)),
    ]
    assert model.layers[-1].activation.__name__ == "softmax"
    assert type(model.optimizer).__name__ == "Adam"
    assert np.isclose(float(model.optimizer.learning_rate), 1e-3)


@pytest.mark.parametrize(
    "pinned",
    [{}, {"cell": "gru", "rnn_layers": 2, "dropout": 0.2}, {"units": 128, "embedding_dim": 32}],
    ids=["default", "gru-stacked", "small"],
)
def test_branches_train_a_step(corpus, pinned):
    p = pipeline(corpus, batch_size=4)
    space = CharLM(p.describe())
    space.set_training_plan(1, 2)
    hp = kt.HyperParameters()
    for name, value in pinned.items():
        hp.Fixed(name, value)
    model = space.build(hp)
    history = model.fit(p.train_data().train, steps_per_epoch=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert history.history["bits_per_char"][-1] == pytest.approx(
        history.history["loss"][-1] / np.log(2), rel=1e-4
    )


def test_generation_writes_the_asked_number_of_known_characters(corpus):
    p = pipeline(corpus)
    space = CharLM(p.describe())
    model = space.build(kt.HyperParameters())
    generate, tables = generator(model, p.vocabulary, 20)
    fn = tf.function(
        generate,
        input_signature=[
            tf.TensorSpec((None,), tf.string),
            tf.TensorSpec((), tf.int32),
            tf.TensorSpec((), tf.float32),
        ],
    )
    out = fn(tf.constant(["the quick", "", "Zebra"]), tf.constant(12), tf.constant(0.8))
    texts = [t.decode() for t in out["generated"].numpy()]
    assert len(texts) == 3
    for text in texts:
        assert len(text) == 12 and set(text) <= set(p.vocabulary)


def test_each_epoch_writes_the_prompts_continued_to_tensorboard(corpus, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    p = pipeline(corpus, batch_size=4)
    meta = p.describe()
    space = CharLM(meta)
    model = space.build(kt.HyperParameters())
    (callback,) = space.extra_callbacks(str(tmp_path / "board"))
    data = p.train_data()
    model.fit(data.train, steps_per_epoch=2, epochs=2, callbacks=[callback], verbose=0)
    events = EventAccumulator(str(tmp_path / "board"), size_guidance={"tensors": 0}).Reload()
    cards = events.Tensors("generated")
    assert [c.step for c in cards] == [0, 1]
    text = cards[-1].tensor_proto.string_val[0].decode()
    for prompt in meta.extra["prompts"]:
        assert f"**{prompt!r}** → " in text
    continued = [line.split(" → ", 1)[1] for line in text.split("\n\n")]
    assert len(continued) == len(meta.extra["prompts"])
    for quoted in continued:  # 80 characters the model knows, quoted with repr
        text = ast.literal_eval(quoted)
        assert len(text) == 80 and set(text) <= set(p.vocabulary)
