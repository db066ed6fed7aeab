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


def pinned_hyperparameters(fixed: dict[str, Any]) -> kt.HyperParameters:
    """`search_space.fixed` as `hp.Fixed` entries: later `hp.Choice(...)` calls return them."""
    hp = kt.HyperParameters()
    for name, value in fixed.items():
        hp.Fixed(name, value)
    return hp


def populate_space(oracle: kt.Oracle, hypermodel: kt.HyperModel, fixed: dict[str, Any]) -> None:
    """Registers every hyperparameter of the space with the oracle, pinned ones as Fixed."""
    names = {h.name for h in discover(hypermodel, kt.HyperParameters()).space}
    unknown = sorted(set(fixed) - names)
    if unknown:
        raise UserError(
            f"search_space.fixed: {unknown[0]!r} is not a hyperparameter of this space; "
            f"known: {', '.join(sorted(names))}"
        )
    hp = oracle.get_space()
    hp.merge(pinned_hyperparameters(fixed).space, overwrite=False)
    oracle.update_space(discover(hypermodel, hp))


def discover(hypermodel: kt.HyperModel, hp: kt.HyperParameters) -> kt.HyperParameters:
    """Builds until every hyperparameter, including those in conditional scopes, is seen.

    The approach of Keras Tuner's own `Tuner._activate_all_conditions`: build once with the
    defaults, then activate each never-seen conditional scope and build again.
    """
    import keras

    hypermodel.declare_hyperparameters(hp)
    seen: set[str] = set()
    while True:
        hypermodel.build(hp)
        keras.backend.clear_session()
        seen.update(repr(c) for c in hp.active_scopes)
        pending = [c for c in hp.inactive_scopes if repr(c) not in seen]
        if not pending:
            return hp
        for condition in pending[0]:
            hp.values[condition.name] = condition.values[0]
        hp.ensure_active_values()
