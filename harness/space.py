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


def check_job_space(spec: JobSpec) -> str | None:
    """Checks the job's pinned and narrowed hyperparameters against its space, as `tune` will
    (raises UserError); returns why it could not, when the data is not available here."""
    from pipelines import PIPELINES

    config = spec.data
    if getattr(config, "download", False):  # validating never downloads a dataset
        config = config.model_copy(update={"download": False})
    pipeline = PIPELINES.get(spec.data.pipeline)(config)
    try:
        pipeline.check_available()
    except UserError as e:
        return f"search_space.fixed/choices not checked against the space: {e}"
    hypermodel = make_hypermodel(spec, pipeline.describe())
    job_space(hypermodel, spec.search_space.fixed, pipeline, spec.search_space.choices)
    return None


def populate_space(
    oracle: kt.Oracle,
    hypermodel: kt.HyperModel,
    fixed: dict[str, Any],
    pipeline=None,
    choices: dict[str, list[Any]] | None = None,
) -> None:
    """Registers every hyperparameter of the data and the model with the oracle: pinned ones
    (`fixed`) as Fixed, narrowed ones (`choices`) as a Choice of the listed values."""
    oracle.update_space(job_space(hypermodel, fixed, pipeline, choices))


def job_space(
    hypermodel: kt.HyperModel,
    fixed: dict[str, Any],
    pipeline=None,
    choices: dict[str, list[Any]] | None = None,
) -> kt.HyperParameters:
    """The space a job searches: the hypermodel's (and the pipeline's) hyperparameters, with
    `search_space.fixed` and `search_space.choices` applied; raises UserError naming a value
    the space could not have chosen or a name it does not have.

    A pinned or narrowed hyperparameter keeps the conditions of the one it replaces, so one in
    a conditional scope (e.g. `filters_3`, active only for deep nets) is still found, and the
    model's own `hp.Choice(...)` call then returns the job's value: Keras Tuner keeps the first
    declaration of a name.
    """
    choices = choices or {}
    space = kt.HyperParameters()
    if pipeline is not None:
        pipeline.declare_hyperparameters(space)
    space = discover(hypermodel, space)
    names = {h.name for h in space.space}
    for key, given in (("fixed", fixed), ("choices", choices)):
        unknown = sorted(set(given) - names)
        if unknown:
            raise UserError(
                f"search_space.{key}: {unknown[0]!r} is not a hyperparameter of this space; "
                f"known: {', '.join(sorted(names))}"
            )
    both = sorted(set(fixed) & set(choices))
    if both:
        raise UserError(f"search_space: {both[0]!r} is both fixed and in choices; keep one")
    narrowed = kt.HyperParameters()
    for h in space.space:
        if h.name in fixed:
            value = _as_type_of(h, fixed[h.name])
            _check_in_domain(h, value, "fixed")
            h = kt.engine.hyperparameters.Fixed(h.name, value, conditions=h.conditions)
        elif h.name in choices:
            h = _narrowed(h, [_as_type_of(h, v) for v in choices[h.name]])
        narrowed.merge([h])
    return narrowed


def _as_type_of(h, value: Any) -> Any:
    """A job's number in the hyperparameter's own type: YAML writes 0 for 0.0 and 3.0 for 3,
    and Keras Tuner wants one type per Choice (and `range(3.0)` fails in a model)."""
    kind = type(h).__name__
    numbers = (int, float)
    if isinstance(value, bool) or not isinstance(value, numbers):
        return value
    if kind == "Float" or (kind == "Choice" and all(isinstance(v, float) for v in h.values)):
        return float(value)
    wants_int = kind == "Int" or (
        kind == "Choice" and all(isinstance(v, int) and not isinstance(v, bool) for v in h.values)
    )
    if wants_int and float(value).is_integer():
        return int(value)
    return value


def _narrowed(h, values: list[Any]):
    """`h` restricted to `values` (each one `h` could take): a Choice, or Fixed for one value.
    The default stays when it is listed; otherwise the first listed value is the default."""
    if not values:
        raise UserError(f"search_space.choices.{h.name}: give at least one value")
    for value in values:
        _check_in_domain(h, value, "choices")
    if len(set(values)) == 1:
        return kt.engine.hyperparameters.Fixed(h.name, values[0], conditions=h.conditions)
    default = h.default if h.default in values else values[0]
    return kt.engine.hyperparameters.Choice(
        h.name, list(dict.fromkeys(values)), default=default, conditions=h.conditions
    )


def _check_in_domain(h, value: Any, key: str) -> None:
    """A job's value must be one the space could have chosen (no depth-0 stacked RNNs)."""
    kind = type(h).__name__
    if kind == "Choice" and value not in h.values:
        allowed = ", ".join(repr(v) for v in h.values)
    elif kind in ("Int", "Float") and (
        isinstance(value, (bool, str)) or not h.min_value <= value <= h.max_value
    ):
        allowed = f"{h.min_value}..{h.max_value}"
    elif kind == "Int" and isinstance(value, float) and not value.is_integer():
        allowed = f"integers {h.min_value}..{h.max_value}"
    elif kind == "Boolean" and not isinstance(value, bool):
        allowed = "true, false"
    else:
        return
    raise UserError(
        f"search_space.{key}.{h.name}: {value!r} is outside the space; allowed: {allowed}"
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
