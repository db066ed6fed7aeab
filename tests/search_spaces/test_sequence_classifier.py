"""The sequence classifier: its default point, every family trains a step, and the model
normalises raw inputs with the training statistics (so exports take raw values)."""

from __future__ import annotations

import keras
import keras_tuner as kt
import numpy as np
import pytest

from pipelines.base import DataMeta
from search_spaces.sequence_classifier import FAMILIES, SequenceClassifier


def meta(shape=(32, 2), mean=(10.0, -3.0), variance=(4.0, 0.25)) -> DataMeta:
    return DataMeta(
        task="sequence_classification",
        input_shape=shape,
        num_classes=4,
        class_names=list("abcd"),
        num_train=64,
        num_validation=16,
        num_test=16,
        fingerprint="x",
        extra={"mean": list(mean), "variance": list(variance)},
    )


def test_default_point_is_three_conv_blocks_with_batch_norm():
    model = SequenceClassifier(meta()).build(kt.HyperParameters())
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv1D)]
    assert [(c.filters, c.kernel_size) for c in convs] == [(64, (5,))] * 3
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("BatchNormalization") == 3 and kinds.count("MaxPooling1D") == 3
    assert "GlobalAveragePooling1D" in kinds and kinds[-2:] == ["Dropout", "Dense"]
    assert model.output_shape == (None, 4)


def test_inputs_are_normalised_with_the_training_statistics():
    model = SequenceClassifier(meta()).build(kt.HyperParameters())
    norm = model.get_layer(index=1)
    raw = np.stack([np.full((32,), 12.0), np.full((32,), -2.5)], axis=-1)[None]
    np.testing.assert_allclose(norm(raw).numpy()[0, 0], [1.0, 1.0], rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_trains_a_step(family):
    hp = kt.HyperParameters()
    hp.Fixed("family", family)
    model = SequenceClassifier(meta()).build(hp)
    assert model.name == f"sequence_{family}"
    x = np.random.default_rng(0).normal(size=(8, 32, 2)).astype(np.float32)
    history = model.fit(x, np.arange(8) % 4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_tabular_rows_as_one_step_of_features_build():  # (N, 1, F): F channels, one step
    model = SequenceClassifier(meta(shape=(1, 5), mean=[0.0] * 5, variance=[1.0] * 5)).build(
        kt.HyperParameters()
    )
    assert model.predict(np.zeros((2, 1, 5), np.float32), verbose=0).shape == (2, 4)
