"""The forecaster space: default point = the tutorial's multi-step LSTM; every branch builds and
trains; data that cannot shape a forecast fails loudly."""

from __future__ import annotations

import dataclasses

import keras
import keras_tuner as kt
import numpy as np
import pytest

from harness.errors import UserError
from pipelines.base import DataMeta
from search_spaces.forecaster import Forecaster

WINDOW, FEATURES, HORIZON, TARGETS, BATCH = 8, 3, 4, ["T", "p"], 4
META = DataMeta(
    "time_series_forecast",
    (WINDOW, FEATURES),
    0,
    [],
    100,
    10,
    10,
    "test",
    extra={"horizon": HORIZON, "targets": TARGETS, "window": WINDOW},
)


@pytest.fixture(autouse=True)
def fresh_keras():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)


def pinned_hp(pinned: dict) -> kt.HyperParameters:
    hp = kt.HyperParameters()
    for name, value in pinned.items():
        hp.Fixed(name, value)
    return hp


def test_default_point_is_the_tutorial_lstm():
    model = Forecaster(META).build(kt.HyperParameters())
    summary = [(type(layer).__name__, tuple(layer.output.shape[1:])) for layer in model.layers]
    assert summary == [
        ("InputLayer", (WINDOW, FEATURES)),
        ("LSTM", (32,)),
        ("Dense", (HORIZON * len(TARGETS),)),
        ("Reshape", (HORIZON, len(TARGETS))),
    ]
    lstm, dense = model.layers[1:3]
    assert lstm.units == 32 and not lstm.return_sequences
    assert type(dense.kernel_initializer).__name__ == "Zeros"  # as the tutorial
    # LSTM 4*(32*(3+32)+32) + dense 32*8+8
    assert model.count_params() == 4_608 + 264
    assert model.loss == "mse"
    assert type(model.optimizer).__name__ == "Adam"
    assert np.isclose(float(model.optimizer.learning_rate), 1e-3)


@pytest.mark.parametrize(
    "pinned",
    [
        # Together: each cell, depth 1..3, dropout on/off and each optimizer.
        {"cell": "gru", "optimizer": "rmsprop", "units": 16},
        {"rnn_layers": 2, "dropout": 0.3, "optimizer": "sgd", "learning_rate": 0.01},
        {"cell": "gru", "rnn_layers": 3, "units": 64},
        {"units": 128, "dropout": 0.5},
    ],
    ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()),
)
def test_branches_build_and_train_one_step(pinned):
    model = Forecaster(META).build(pinned_hp(pinned))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, WINDOW, FEATURES)).astype("float32")
    y = rng.normal(size=(BATCH, HORIZON, len(TARGETS))).astype("float32")
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]) and "mae" in logs  # the space's declared objective
    assert model.predict_on_batch(x).shape == (BATCH, HORIZON, len(TARGETS))
    rnns = [layer for layer in model.layers if type(layer).__name__ in ("LSTM", "GRU")]
    assert len(rnns) == pinned.get("rnn_layers", 1)
    assert {type(layer).__name__ for layer in rnns} == {pinned.get("cell", "lstm").upper()}
    assert [layer.return_sequences for layer in rnns] == [True] * (len(rnns) - 1) + [False]
    assert {layer.units for layer in rnns} == {pinned.get("units", 32)}
    layer_types = [type(layer).__name__ for layer in model.layers]
    assert ("Dropout" in layer_types) == (pinned.get("dropout", 0.0) > 0)
    assert type(model.optimizer).__name__.lower() == pinned.get("optimizer", "adam")


@pytest.mark.parametrize(
    "extra, input_shape, message",
    [
        ({"horizon": 0, "targets": TARGETS}, (WINDOW, FEATURES), "horizon .* got 0"),
        ({"targets": TARGETS}, (WINDOW, FEATURES), "horizon .* got None"),
        ({"horizon": HORIZON, "targets": []}, (WINDOW, FEATURES), "target column, got \\[\\]"),
        ({"horizon": HORIZON, "targets": TARGETS}, (WINDOW,), "got \\(8,\\)"),
    ],
)
def test_data_that_cannot_shape_a_forecast_is_a_user_error(extra, input_shape, message):
    meta = dataclasses.replace(META, extra=extra, input_shape=input_shape)
    with pytest.raises(UserError, match=message) as err:
        Forecaster(meta)
    assert "\n" not in str(err.value)
