"""Time-series forecaster whose default point is the TensorFlow tutorial's multi-step LSTM.

Default: LSTM32-Dense(horizon * n_targets)-Reshape(horizon, n_targets), Adam 1e-3, MSE loss.
From there it varies the cell, depth, width, dropout and optimizer. The window length is the
time-series pipeline's own `window` hyperparameter, so it arrives here as `meta.input_shape`.
"""

from __future__ import annotations

import keras_tuner as kt

from harness_core.errors import UserError
from pipelines.base import DataMeta
from search_spaces.base import SearchSpace, make_optimizer

MAX_RNN_LAYERS = 3


class Forecaster(SearchSpace):
    """Stacked RNN over a `(window, n_features)` window -> `(horizon, n_targets)` forecast.

    Args:
        meta: The time-series pipeline's description; `extra["horizon"]` (steps predicted) and
            `extra["targets"]` (predicted columns) shape the output.
    """

    tasks = ("time_series_forecast",)
    metrics = ["mae"]

    def __init__(self, meta: DataMeta):
        _check_meta(meta)
        super().__init__(meta)

    def build(self, hp: kt.HyperParameters):
        import keras
        from keras import layers

        horizon = self.meta.extra["horizon"]
        n_targets = len(self.meta.extra["targets"])
        inputs = keras.Input(shape=self.meta.input_shape, name="window")
        x = _rnn_stack(hp, inputs)
        rate = hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.0)
        if rate > 0:
            x = layers.Dropout(rate)(x)
        # Zero kernel like the tutorial: training starts from predicting the (normalized) mean.
        x = layers.Dense(horizon * n_targets, kernel_initializer="zeros")(x)
        outputs = layers.Reshape((horizon, n_targets), name="forecast")(x)
        model = keras.Model(inputs, outputs, name="forecaster")
        model.compile(optimizer=make_optimizer(hp), loss="mse", metrics=["mae"])
        return model


def _rnn_stack(hp: kt.HyperParameters, x):
    """`rnn_layers` recurrent layers; all but the last hand the next one a sequence."""
    from keras import layers

    cell = hp.Choice("cell", ["lstm", "gru"], default="lstm")
    depth = hp.Int("rnn_layers", 1, MAX_RNN_LAYERS, default=1)
    units = hp.Choice("units", [16, 32, 64, 128], default=32)
    rnn_cls = layers.LSTM if cell == "lstm" else layers.GRU
    for i in range(depth):
        x = rnn_cls(units, return_sequences=i < depth - 1)(x)
    return x


def _check_meta(meta: DataMeta) -> None:
    """Fails before any trial when the data cannot shape a forecast (e.g. a custom pipeline)."""
    horizon = meta.extra.get("horizon")
    targets = meta.extra.get("targets")
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise UserError(f"data: a forecast needs a horizon of at least 1 step, got {horizon!r}")
    if not targets:
        raise UserError(f"data: a forecast needs at least 1 target column, got {targets!r}")
    if len(meta.input_shape) != 2:
        raise UserError(
            f"data: a forecaster takes (window, n_features) inputs, got {meta.input_shape}"
        )
