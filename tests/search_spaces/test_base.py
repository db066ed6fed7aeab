"""The shared training levers: per-optimizer learning rates, schedules over the engine's training
plan, AdamW weight decay, label smoothing, and the driver finding every branch's
hyperparameters."""

from __future__ import annotations

import signal

import keras
import keras_tuner as kt
import numpy as np
import pytest

from harness.space import discover
from pipelines.base import DataMeta
from search_spaces.base import (
    SearchSpace,
    TrainingPlan,
    classification_loss,
    compile_classifier,
    make_optimizer,
)
from search_spaces.image_cnn import ImageCNN
from search_spaces.text_rnn import TextRNN

META = DataMeta("image_classification", (4,), 3, ["a", "b", "c"], 320, 10, 10, "test")


@pytest.fixture(autouse=True)
def fresh_keras():
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)


def pinned_hp(**values) -> kt.HyperParameters:
    hp = kt.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    return hp


class TinyClassifier(SearchSpace):
    """Dense(3) on 4 features, compiled with the shared levers over its training plan."""

    def build(self, hp):
        inputs = keras.Input((4,))
        outputs = keras.layers.Dense(3, activation="softmax", name="probs")(inputs)
        model = keras.Model(inputs, outputs)
        compile_classifier(model, hp, self.training_plan)
        return model


def learning_rates(optimizer, steps: list[int]) -> list[float]:
    """The optimizer's learning rate as it stands after each number of update steps."""
    rates = []
    for step in steps:
        optimizer.iterations.assign(step)
        rates.append(float(optimizer.learning_rate))
    return rates


def test_default_point_is_adam_at_a_constant_1e3_with_the_plain_loss():
    model = TinyClassifier(META).build(kt.HyperParameters())
    assert type(model.optimizer).__name__ == "Adam"
    assert learning_rates(model.optimizer, [0, 500]) == pytest.approx([1e-3, 1e-3])
    assert model.loss == "sparse_categorical_crossentropy"


def test_sgd_gets_its_own_learning_rate_range_with_momentum():
    hp = kt.HyperParameters()
    optimizer = make_optimizer(pinned_hp(optimizer="sgd"))
    assert type(optimizer).__name__ == "SGD" and optimizer.momentum == 0.9
    assert np.isclose(float(optimizer.learning_rate), 0.05)
    make_optimizer(hp)
    ranges = {h.name: (h.min_value, h.max_value) for h in hp.space if h.name.endswith("rate")}
    assert ranges == {"learning_rate": (1e-4, 3e-3), "sgd_learning_rate": (1e-2, 3e-1)}


def test_cosine_schedule_warms_up_then_decays_to_zero_over_the_plan():
    space = TinyClassifier(META)
    space.set_training_plan(epochs=4, steps_per_epoch=25)  # 100 steps, 10 of them warm-up
    hp = pinned_hp(lr_schedule="cosine", warmup_fraction=0.1, learning_rate=2e-3)
    optimizer = space.build(hp).optimizer
    rates = learning_rates(optimizer, [0, 5, 10, 55, 100, 150])
    # Linear from 0 to the peak, cosine down: half the peak half-way through the decay.
    assert rates == pytest.approx([0.0, 1e-3, 2e-3, 1e-3, 0.0, 0.0], abs=1e-9)


def test_one_cycle_starts_at_a_25th_of_the_peak_and_peaks_at_30_percent():
    space = TinyClassifier(META)
    space.set_training_plan(epochs=10, steps_per_epoch=10)
    optimizer = space.build(pinned_hp(lr_schedule="one_cycle", learning_rate=2.5e-3)).optimizer
    rates = learning_rates(optimizer, [0, 30, 65, 100])
    assert rates == pytest.approx([1e-4, 2.5e-3, 1.25e-3, 0.0], abs=1e-9)


def test_training_steps_move_the_learning_rate_along_the_schedule():
    space = TinyClassifier(META)
    space.set_training_plan(epochs=1, steps_per_epoch=20)
    model = space.build(pinned_hp(lr_schedule="cosine", warmup_fraction=0.1, learning_rate=1e-3))
    x, y = np.ones((8, 4), "float32"), np.zeros(8, "int64")
    seen = []
    for _ in range(3):
        seen.append(float(model.optimizer.learning_rate))
        model.train_on_batch(x, y)
    assert seen == pytest.approx([0.0, 5e-4, 1e-3])  # 2 warm-up steps of the plan's 20


def test_the_plan_sets_the_schedule_length_and_has_a_default():
    space = TinyClassifier(META)
    # Before the engine's call (the driver's discovery builds): 10 epochs of 320 // 32 steps.
    assert space.training_plan == TrainingPlan(10, 10)
    hp = pinned_hp(lr_schedule="cosine", warmup_fraction=0.0, learning_rate=1e-3)
    assert learning_rates(space.build(hp).optimizer, [50, 100]) == pytest.approx([5e-4, 0.0])
    space.set_training_plan(epochs=2, steps_per_epoch=100)
    assert learning_rates(space.build(hp).optimizer, [50, 100]) == pytest.approx(
        [0.5e-3 * (1 + np.cos(np.pi / 4)), 5e-4]
    )
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive int, got 0"):
        space.set_training_plan(epochs=3, steps_per_epoch=0)


def test_a_continued_run_takes_the_schedule_up_where_its_weights_left_off(tmp_path):
    """A Hyperband round continuing epoch 2 of 4: its new optimizer's steps 0, 25, 50 get the
    plan's rates at steps 50, 75, 100 (annealing to 0), not a second warm-up from 0."""
    space = TinyClassifier(META)
    hp = pinned_hp(lr_schedule="cosine", warmup_fraction=0.1, learning_rate=2e-3)
    space.set_training_plan(epochs=4, steps_per_epoch=25)
    whole = learning_rates(space.build(hp).optimizer, [50, 75, 100])
    space.set_training_plan(epochs=4, steps_per_epoch=25, initial_epoch=2)
    model = space.build(hp)
    assert learning_rates(model.optimizer, [0, 25, 50]) == pytest.approx(whole, abs=1e-9)
    assert whole[0] > whole[1] > whole[2] == pytest.approx(0.0, abs=1e-9)
    model.save(tmp_path / "continued.keras")  # the schedule is saved with the optimizer
    reloaded = keras.models.load_model(tmp_path / "continued.keras")
    assert learning_rates(reloaded.optimizer, [0]) == pytest.approx(whole[:1])
    with pytest.raises(ValueError, match=r"initial_epoch must be in 0..3, got 4"):
        space.set_training_plan(epochs=4, steps_per_epoch=25, initial_epoch=4)


def test_warm_restarts_start_the_schedule_over_at_each_restart(tmp_path):
    """`restarts` at steps 10 and 40 of 100: three one-cycle schedules of 10, 30 and 60 steps,
    each from a 25th of the peak up (30% of its own steps) and annealed to 0 by its end."""
    space = TinyClassifier(META)
    hp = pinned_hp(lr_schedule="one_cycle", learning_rate=2.5e-3)
    space.set_training_plan(epochs=4, steps_per_epoch=25, restarts=(10, 40))
    model = space.build(hp)
    steps = [0, 3, 9, 10, 19, 40, 58, 99, 100]
    rates = learning_rates(model.optimizer, steps)
    low, peak = 1e-4, 2.5e-3
    assert rates[:2] == pytest.approx([low, peak]) and rates[2] < 0.06 * peak
    assert rates[3] == pytest.approx(low) and rates[4] == pytest.approx(peak)  # 9 = 30% of 30
    assert rates[5] == pytest.approx(low) and rates[6] == pytest.approx(peak)  # 18 of 60
    assert rates[7] < 0.01 * peak and rates[8] == pytest.approx(0.0, abs=1e-9)
    # A trial continued from the rung at step 40 takes the plan up there: a new warm-up.
    space.set_training_plan(
        epochs=4, steps_per_epoch=25, initial_epoch=1, initial_step=15, restarts=(10, 40)
    )
    continued = space.build(hp)
    assert learning_rates(continued.optimizer, [0, 18, 59]) == pytest.approx(
        learning_rates(model.optimizer, [40, 58, 99]), abs=1e-9
    )
    continued.save(tmp_path / "restarts.keras")  # the schedule is saved with the optimizer
    reloaded = keras.models.load_model(tmp_path / "restarts.keras")
    assert learning_rates(reloaded.optimizer, [0, 18]) == pytest.approx([low, peak])
    # A constant rate has nothing to restart.
    space.set_training_plan(epochs=4, steps_per_epoch=25, restarts=(10, 40))
    constant = space.build(pinned_hp(lr_schedule="constant", learning_rate=1e-3))
    assert learning_rates(constant.optimizer, [0, 10, 99]) == pytest.approx([1e-3] * 3)
    with pytest.raises(ValueError, match="restarts must be increasing steps in 1..99"):
        space.set_training_plan(epochs=4, steps_per_epoch=25, restarts=(40, 10))
    with pytest.raises(ValueError, match="restarts must be increasing steps in 1..99"):
        space.set_training_plan(epochs=4, steps_per_epoch=25, restarts=(100,))


def test_label_smoothing_is_cross_entropy_against_smoothed_targets():
    plain = TinyClassifier(META).build(kt.HyperParameters())
    smoothed = TinyClassifier(META).build(pinned_hp(label_smoothing=0.2))
    smoothed.set_weights(plain.get_weights())
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    y = np.arange(16) % 3
    probs = np.asarray(plain.predict_on_batch(x))
    targets = np.full((16, 3), 0.2 / 3) + 0.8 * np.eye(3)[y]
    want = float(np.mean(-np.sum(targets * np.log(probs), axis=1)))
    unsmoothed = float(np.mean(-np.log(probs[np.arange(16), y])))
    logs = smoothed.evaluate(x, y, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(want, rel=1e-5)
    assert abs(want - unsmoothed) > 1e-2  # not vacuous: smoothing moves the loss
    # `accuracy` is still sparse accuracy, so the objectives keep their names and meaning.
    assert logs["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == y))


def test_smoothed_classifier_reports_val_accuracy_and_survives_a_keras_file(tmp_path):
    model = TinyClassifier(META).build(pinned_hp(label_smoothing=0.1))
    x, y = np.eye(4, dtype="float32")[np.arange(12) % 3], np.arange(12) % 3
    history = model.fit(x, y, validation_data=(x, y), epochs=1, verbose=0)
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history.history)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.loss.label_smoothing == 0.1
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0))


def test_no_smoothing_keeps_the_tutorials_loss():
    assert classification_loss(kt.HyperParameters()) == "sparse_categorical_crossentropy"


def apply_zero_gradients(optimizer, model, steps: int = 1) -> None:
    """Updates from all-zero gradients: Adam's step is then 0, so only weight decay moves."""
    variables = model.trainable_variables
    for _ in range(steps):
        optimizer.apply_gradients([(keras.ops.zeros_like(v), v) for v in variables])


@pytest.mark.parametrize("name", ["adamw", "adam"])
def test_adamw_decays_kernels_but_not_biases(name):
    hp = pinned_hp(optimizer=name, learning_rate=3e-3, weight_decay=0.1)
    model = TinyClassifier(META).build(hp)
    kernel, bias = model.get_layer("probs").kernel, model.get_layer("probs").bias
    bias.assign(np.ones(3, "float32"))
    before = np.asarray(kernel).copy()
    apply_zero_gradients(model.optimizer, model, steps=10)
    shrink = (1 - 3e-3 * 0.1) ** 10 if name == "adamw" else 1.0
    np.testing.assert_allclose(np.asarray(kernel), before * shrink, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(bias), np.ones(3))


@pytest.fixture
def alarm():
    """Fails a test that would otherwise hang (a discovery loop that never ends)."""

    def timeout(*_):
        raise TimeoutError("discovering the space did not finish in 60 s")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


IMAGE_META = DataMeta(
    "image_classification", (28, 28, 1), 10, [str(i) for i in range(10)], 100, 10, 10, "test"
)
TEXT_META = DataMeta(
    "text_classification", (12,), 2, ["neg", "pos"], 100, 10, 10, "test",
    extra={"vocab_size": 50, "sequence_length": 12},
)  # fmt: skip
SHARED = {
    "optimizer": (),
    "learning_rate": (("optimizer", ("adam", "adamw", "rmsprop")),),
    "sgd_learning_rate": (("optimizer", ("sgd",)),),
    "weight_decay": (("optimizer", ("adamw",)),),
    "lr_schedule": (),
    "warmup_fraction": (("lr_schedule", ("cosine",)),),
    "label_smoothing": (),
}


@pytest.mark.parametrize(
    "space, branch_only",
    [
        (
            ImageCNN(IMAGE_META),
            {
                "filters_4": (("family", ("plain",)), ("conv_layers", (5,))),
                "vgg_blocks": (("family", ("vgg",)),),
                "vgg_filters": (("family", ("vgg",)),),
                "vgg_dropout": (("family", ("vgg",)),),
            },
        ),
        (
            TextRNN(TEXT_META),
            {
                "cell": (("family", ("rnn",)),),
                "pooling": (("family", ("pooled",)),),
                "conv_filters": (("family", ("conv1d",)),),
                "conv_kernel_size": (("family", ("conv1d",)),),
            },
        ),
    ],
    ids=["image_cnn", "text_rnn"],
)
def test_the_driver_discovers_every_branch_with_its_condition(space, branch_only, alarm):
    # What the oracle can sample is what the driver's discovery finds: a branch's
    # hyperparameters it missed would stay at their defaults in every trial.
    found = {
        h.name: tuple((c.name, tuple(c.values)) for c in h.conditions)
        for h in discover(space, kt.HyperParameters()).space
    }
    assert {name: found.get(name) for name in {**SHARED, **branch_only}} == {
        **SHARED,
        **branch_only,
    }
