"""The search space as the oracle sees it: built from the hypermodel before the first trial."""

from __future__ import annotations

from typing import Any

import keras_tuner as kt

from harness.errors import UserError
from harness.job import JobSpec
from pipelines.base import DataMeta
from search_spaces import SEARCH_SPACES


def make_hypermodel(spec: JobSpec, meta: DataMeta) -> kt.HyperModel:
    cls = SEARCH_SPACES.get(spec.search_space.name)
    return cls(meta, **spec.search_space.options)


def populate_space(
    oracle: kt.Oracle, hypermodel: kt.HyperModel, fixed: dict[str, Any], pipeline=None
) -> None:
    """Registers every hyperparameter of the data and the model with the oracle, pinned ones
    as Fixed.

    A pinned hyperparameter keeps the conditions of the one it replaces, so a value pinned
    inside a conditional scope (e.g. `filters_3`, active only for deep nets) is still found.
    """
    space = kt.HyperParameters()
    if pipeline is not None:
        pipeline.declare_hyperparameters(space)
    space = discover(hypermodel, space)
    names = {h.name for h in space.space}
    unknown = sorted(set(fixed) - names)
    if unknown:
        raise UserError(
            f"search_space.fixed: {unknown[0]!r} is not a hyperparameter of this space; "
            f"known: {', '.join(sorted(names))}"
        )
    pinned = kt.HyperParameters()
    for h in space.space:
        if h.name in fixed:
            _check_in_domain(h, fixed[h.name])
            h = kt.engine.hyperparameters.Fixed(h.name, fixed[h.name], conditions=h.conditions)
        pinned.merge([h])
    oracle.update_space(pinned)


def _check_in_domain(h, value: Any) -> None:
    """A pinned value must be one the space could have chosen (no depth-0 stacked RNNs)."""
    kind = type(h).__name__
    if kind == "Choice" and value not in h.values:
        allowed = ", ".join(repr(v) for v in h.values)
    elif kind in ("Int", "Float") and not h.min_value <= value <= h.max_value:
        allowed = f"{h.min_value}..{h.max_value}"
    elif kind == "Boolean" and not isinstance(value, bool):
        allowed = "true, false"
    else:
        return
    raise UserError(
        f"search_space.fixed.{h.name}: {value!r} is outside the space; allowed: {allowed}"
    )


def discover(hypermodel: kt.HyperModel, hp: kt.HyperParameters) -> kt.HyperParameters:
    """Builds until every hyperparameter, including those in conditional scopes, is seen.

    The approach of Keras Tuner's own `Tuner._activate_all_conditions`: build once with the
    defaults, then activate each never-seen conditional scope and build again. Each scope is
    tried once (nested scopes whose parents cannot be activated together would loop forever),
    and a configuration that cannot be built is skipped here: it fails its own trial later, in
    a worker, not the driver.
    """
    import keras

    hypermodel.declare_hyperparameters(hp)
    seen: set[tuple] = set()
    while True:
        try:
            hypermodel.build(hp)
        except Exception:  # noqa: BLE001 - the trial that draws it fails with the reason
            pass
        keras.backend.clear_session()
        seen.update(_key(c) for c in hp.active_scopes)
        pending = [c for c in hp.inactive_scopes if _key(c) not in seen]
        if not pending:
            return hp
        seen.add(_key(pending[0]))
        for condition in pending[0]:
            hp.values[condition.name] = condition.values[0]
        hp.ensure_active_values()


def _key(scope: list) -> tuple:
    """A scope (a list of Keras Tuner conditions) by value: conditions have no value repr."""
    return tuple((c.name, tuple(c.values)) for c in scope)
