"""Discovering a search space in the driver: every branch found, bounded work, no crash."""

from __future__ import annotations

import keras_tuner as kt
import pytest

from harness.errors import UserError
from harness.space import discover, job_space, populate_space


class Nested(kt.HyperModel):
    """Two levels of conditional scopes; the 'broken' branch cannot be built."""

    def __init__(self):
        super().__init__()
        self.builds = 0

    def build(self, hp):
        import keras

        self.builds += 1
        kind = hp.Choice("kind", ["a", "b", "broken"], default="a")
        with hp.conditional_scope("kind", ["a"]):
            depth = hp.Int("depth", 1, 3, default=1)
            for i in range(3):
                with hp.conditional_scope("depth", list(range(i + 1, 4))):
                    hp.Int(f"units_{i}", 4, 8, default=4)
        with hp.conditional_scope("kind", ["b"]):
            hp.Float("rate", 0.0, 0.5, default=0.1)
        if kind == "broken":
            raise ValueError("this configuration cannot be built")
        inputs = keras.Input((3,))
        return keras.Model(inputs, keras.layers.Dense(depth or 1)(inputs))


def test_discover_finds_nested_scopes_with_a_bounded_number_of_builds():
    model = Nested()
    names = {h.name for h in discover(model, kt.HyperParameters()).space}
    assert names == {"kind", "depth", "units_0", "units_1", "units_2", "rate"}
    assert model.builds <= 8  # one per distinct scope at most, not one per object seen


def test_a_configuration_that_cannot_be_built_does_not_stop_the_driver():
    hp = kt.HyperParameters()
    hp.Choice("kind", ["a", "b", "broken"], default="broken")
    names = {h.name for h in discover(Nested(), hp).space}
    assert {"kind", "depth", "rate"} <= names


def test_pinned_value_outside_the_space_is_refused():
    oracle = kt.oracles.RandomSearchOracle(max_trials=1)
    with pytest.raises(UserError, match="fixed.depth: 7 is outside the space; allowed: 1..3"):
        populate_space(oracle, Nested(), {"depth": 7})


def test_the_driver_hides_the_gpus_from_itself(monkeypatch):
    import tensorflow as tf

    from harness.strategy import keep_driver_off_gpus

    calls = []
    monkeypatch.setattr(tf.config, "set_visible_devices", lambda *a: calls.append(a))
    keep_driver_off_gpus()
    assert calls == [([], "GPU")]


def test_choices_narrow_the_space_and_keep_conditions():
    space = job_space(Nested(), {}, choices={"units_1": [8, 6], "kind": ["b", "a"]})
    by_name = {h.name: h for h in space.space}
    assert by_name["units_1"].values == [8, 6] and by_name["units_1"].default == 8
    assert by_name["kind"].default == "a"  # the space's default stays when it is listed
    assert [c.name for c in by_name["units_1"].conditions] == ["kind", "depth"]
    hp = kt.HyperParameters.from_config(space.get_config())
    hp.values["kind"], hp.values["depth"], hp.values["units_1"] = "a", 3, 6
    hp.ensure_active_values()
    Nested().build(hp)  # the model's own Int("units_1", 4, 8) returns the job's choice
    assert hp.get("units_1") == 6


@pytest.mark.parametrize(
    "fixed, choices, message",
    [
        ({}, {"units_1": [9]}, "choices.units_1: 9 is outside the space; allowed: 4..8"),
        ({}, {"units_1": [5.5]}, "choices.units_1: 5.5 is outside the space"),
        ({}, {"kind": []}, "choices.kind: give at least one value"),
        ({"kind": "a"}, {"kind": ["a", "b"]}, "'kind' is both fixed and in choices"),
        ({}, {"depth": ["2"]}, "choices.depth: '2' is outside the space"),
    ],
)
def test_bad_choices_are_refused_with_the_name(fixed, choices, message):
    with pytest.raises(UserError, match=message):
        job_space(Nested(), fixed, choices=choices)


def test_yaml_numbers_take_the_hyperparameters_type():
    # YAML gives 0 for a float 0.0 and 2.0 for an int: one type per Choice, ints stay ints.
    space = job_space(Nested(), {"depth": 2.0}, choices={"rate": [0, 0.2]})
    by_name = {h.name: h for h in space.space}
    assert by_name["rate"].values == [0.0, 0.2] and all(
        isinstance(v, float) for v in by_name["rate"].values
    )
    assert by_name["depth"].value == 2 and isinstance(by_name["depth"].value, int)
