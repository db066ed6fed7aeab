"""The text space: default point = the tutorial LSTM; every family (RNN, pooled embeddings,
Conv1D) and branch builds and trains; padding never changes a prediction; bad options fail
loudly."""

from __future__ import annotations

import dataclasses

import keras
import keras_tuner as kt
import numpy as np
import pytest

from harness.errors import UserError
from pipelines.base import DataMeta
from search_spaces.text_rnn import TextRNN

VOCAB, LENGTH, BATCH = 50, 12, 4
META = DataMeta(
    "text_classification",
    (LENGTH,),
    2,
    ["neg", "pos"],
    100,
    10,
    10,
    "test",
    extra={"vocab_size": VOCAB, "sequence_length": LENGTH},
)
RNN_TYPES = ("SimpleRNN", "LSTM", "GRU")
CELL_TYPES = {"simple_rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}


@pytest.fixture(autouse=True)
def fresh_keras():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)


def pinned_hp(pinned: dict) -> kt.HyperParameters:
    hp = kt.HyperParameters()
    for name, value in pinned.items():
        hp.Fixed(name, value)
    return hp


def tiny_batch(rng: np.random.Generator) -> np.ndarray:
    """Token ids >= 1 (0 is padding), rows of 12, 3, 7 and 0 tokens padded with zeros at the end.

    The all-padding row is what an empty or all-punctuation text vectorizes to: a NaN there
    would poison a whole trial.
    """
    tokens = rng.integers(1, VOCAB, size=(BATCH, LENGTH))
    lengths = np.array([LENGTH, 3, 7, 0])
    tokens[np.arange(LENGTH) >= lengths[:, None]] = 0
    return tokens


def recurrent_layers(model) -> list:
    """The recurrent layers in order, each unwrapped from its Bidirectional wrapper if any."""
    found = []
    for layer in model.layers:
        if type(layer).__name__ == "Bidirectional":
            layer = layer.forward_layer
        if type(layer).__name__ in RNN_TYPES:
            found.append(layer)
    return found


def head_input(model):
    """The model up to the output layer: what the head gets (dropout is off at inference)."""
    return keras.Model(model.input, model.get_layer("probs").input)


def test_default_point_is_the_tutorial_lstm():
    model = TextRNN(META).build(kt.HyperParameters())
    summary = [(type(layer).__name__, tuple(layer.output.shape[1:])) for layer in model.layers]
    assert summary == [
        ("InputLayer", (LENGTH,)),
        ("Embedding", (LENGTH, 128)),
        ("LSTM", (64,)),
        ("Dropout", (64,)),
        ("Dense", (2,)),
    ]
    embedding, lstm, dropout = model.layers[1:4]
    assert embedding.mask_zero and embedding.input_dim == VOCAB
    assert lstm.units == 64 and not lstm.return_sequences
    assert dropout.rate == 0.5
    # embedding 50*128 + LSTM 4*(64*(128+64)+64) + dense 64*2+2
    assert model.count_params() == 6_400 + 49_408 + 130
    assert model.loss == "sparse_categorical_crossentropy"
    assert type(model.optimizer).__name__ == "Adam"
    assert np.isclose(float(model.optimizer.learning_rate), 1e-3)
    model.optimizer.iterations.assign(10_000)  # constant: no schedule at the default point
    assert np.isclose(float(model.optimizer.learning_rate), 1e-3)


@pytest.mark.parametrize(
    "pinned",
    [
        # Together: every cell, direction, depth 1..3, head and optimizer. Few cases because
        # tracing an RNN train step takes seconds on 2 shared cores.
        {"cell": "simple_rnn", "optimizer": "rmsprop", "dropout": 0.0},
        {"cell": "gru", "bidirectional": True, "rnn_layers": 2, "optimizer": "sgd"},
        {"bidirectional": True, "head": "max_pool", "embedding_dim": 64, "units": 32},
        {"rnn_layers": 3, "head": "avg_pool", "recurrent_dropout": 0.2, "units": 32},
    ],
    ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()),
)
def test_branches_build_and_train_one_step(pinned):
    model = TextRNN(META).build(pinned_hp(pinned))
    rng = np.random.default_rng(0)
    tokens = tiny_batch(rng)
    logs = model.train_on_batch(tokens, rng.integers(0, 2, size=BATCH), return_dict=True)
    assert np.isfinite(logs["loss"]) and "accuracy" in logs  # the space's declared objective
    rnns = recurrent_layers(model)
    head = pinned.get("head", "last")
    assert len(rnns) == pinned.get("rnn_layers", 1)
    assert {type(layer).__name__ for layer in rnns} == {CELL_TYPES[pinned.get("cell", "lstm")]}
    assert [layer.return_sequences for layer in rnns[:-1]] == [True] * (len(rnns) - 1)
    assert rnns[-1].return_sequences == (head != "last")
    layer_types = [type(layer).__name__ for layer in model.layers]
    assert ("Bidirectional" in layer_types) == pinned.get("bidirectional", False)
    op_types = [type(op).__name__ for op in model.operations]
    assert ("Max" in op_types) == (head == "max_pool")
    assert ("TrueDivide" in op_types) == (head == "avg_pool")
    assert ("Dropout" in layer_types) == (pinned.get("dropout", 0.5) > 0)
    assert type(model.optimizer).__name__.lower() == pinned.get("optimizer", "adam")


@pytest.mark.parametrize(
    "pinned, width",
    [
        ({"family": "pooled"}, 128),
        ({"family": "pooled", "pooling": "avg_max", "embedding_dim": 64}, 128),
        ({"family": "pooled", "pooling": "max", "optimizer": "adamw"}, 128),
        ({"family": "conv1d", "conv_kernel_size": 7, "conv_filters": 64}, 64),
    ],
    ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) if isinstance(p, dict) else "",
)
def test_other_families_build_and_train_one_step(pinned, width):
    model = TextRNN(META).build(pinned_hp(pinned))
    rng = np.random.default_rng(0)
    logs = model.train_on_batch(tiny_batch(rng), rng.integers(0, 2, size=BATCH), return_dict=True)
    assert np.isfinite(logs["loss"]) and "accuracy" in logs  # the empty row gives no NaN
    assert not recurrent_layers(model)
    assert not model.get_layer(index=1).mask_zero  # masks by token id, not Keras masks
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv1D"]
    if pinned["family"] == "conv1d":
        assert [(c.kernel_size, c.filters, c.padding) for c in convs] == [((7,), 64, "same")]
    else:
        assert not convs
    assert head_input(model).output.shape[-1] == width  # avg_max: both poolings side by side
    assert model.name == f"text_{pinned['family']}"


def test_the_rnn_family_is_the_default_and_only_it_declares_rnn_choices():
    hp = kt.HyperParameters()
    TextRNN(META).build(hp)
    family = next(h for h in hp.space if h.name == "family")
    assert (family.default, list(family.values)) == ("rnn", ["rnn", "pooled", "conv1d"])
    cell = next(h for h in hp.space if h.name == "cell")
    assert [(c.name, c.values) for c in cell.conditions] == [("family", ["rnn"])]


@pytest.mark.parametrize(
    "pinned",
    [
        {},
        {"cell": "gru", "bidirectional": True},
        {"head": "max_pool", "bidirectional": True},
        {"head": "avg_pool", "cell": "simple_rnn", "rnn_layers": 2},
        {"family": "pooled", "pooling": "avg_max"},
        {"family": "conv1d", "conv_kernel_size": 7},
    ],
    ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "default",
)
def test_padding_does_not_change_the_prediction(pinned):
    # Padding is all zeros, so two inputs of one length cannot differ only in padding. Instead a
    # second model takes any length and gets the first one's weights: the fixed-length model on
    # 5 tokens + 7 zeros must agree with it on the same 5 tokens alone, with no padding at all.
    # Compared on the head's input, since untrained probabilities all sit near 0.5.
    fixed = head_input(TextRNN(META).build(pinned_hp(pinned)))
    free = head_input(
        TextRNN(dataclasses.replace(META, input_shape=(None,))).build(pinned_hp(pinned))
    )
    free.set_weights(fixed.get_weights())
    tokens = np.array([[7, 3, 41, 9, 22]])
    padded = np.pad(tokens, ((0, 0), (0, LENGTH - 5)))
    unpadded = np.asarray(free(tokens))
    np.testing.assert_allclose(np.asarray(fixed(padded)), unpadded, atol=1e-6)
    # Not vacuous: real tokens where the padding was do change the result.
    longer = padded.copy()
    longer[0, 5:] = np.arange(2, 2 + LENGTH - 5)
    assert np.abs(np.asarray(fixed(longer)) - unpadded).max() > 1e-3


@pytest.mark.parametrize(
    "pinned",
    [{"head": "max_pool"}, {"head": "avg_pool"}, {"family": "pooled", "pooling": "avg_max"},
     {"family": "conv1d"}],
    ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()),
)  # fmt: skip
def test_pooling_heads_survive_a_keras_file_round_trip(pinned, tmp_path):
    # The heads are plain Keras ops, not custom layers, so the export's model.keras loads in
    # plain Keras (no custom objects to register) and predicts the same.
    model = TextRNN(META).build(pinned_hp(pinned))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    x = tiny_batch(np.random.default_rng(0))
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)


def test_max_rnn_layers_bounds_the_depth():
    hp = kt.HyperParameters()
    TextRNN(META, max_rnn_layers=2).build(hp)
    rnn_layers = next(h for h in hp.space if h.name == "rnn_layers")
    assert (rnn_layers.default, rnn_layers.min_value, rnn_layers.max_value) == (1, 1, 2)


@pytest.mark.parametrize(
    "value, message",
    [(0, "at least 1 layer, got 0"), (-2, "got -2"), ("3", "expected an integer, got '3'")],
)
def test_bad_max_rnn_layers_is_a_user_error(value, message):
    with pytest.raises(UserError, match=message) as err:
        TextRNN(META, max_rnn_layers=value)
    assert "max_rnn_layers" in str(err.value) and "\n" not in str(err.value)
