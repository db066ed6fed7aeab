"""Job files: YAML -> validated `JobSpec`, with `--set` overrides and the `smoke` variant.

Everything is validated before any work starts; every problem becomes one line that names the
key, the bad value and what is allowed.
"""

from __future__ import annotations

import copy
import inspect
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SerializeAsAny,
    ValidationError,
    model_validator,
)

from harness.errors import UserError
from pipelines import PIPELINES
from pipelines.base import PipelineConfig
from search_spaces import SEARCH_SPACES

ALGORITHMS = ("random", "bayesian", "hyperband", "grid")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchSpaceSpec(Strict):
    """Which hypermodel to search, hyperparameters pinned to a value, constructor options."""

    name: str
    fixed: dict[str, bool | int | float | str] = {}
    options: dict[str, Any] = {}


class ObjectiveSpec(Strict):
    name: str = "val_accuracy"
    direction: Literal["max", "min"] = "max"


class TunerSpec(Strict):
    """The Keras Tuner oracle and the search budget."""

    algorithm: Literal["random", "bayesian", "hyperband", "grid"] = "bayesian"
    max_trials: PositiveInt = 10
    epochs: PositiveInt = 10
    time_budget_s: PositiveFloat | None = None
    objective: ObjectiveSpec = ObjectiveSpec()
    seed: NonNegativeInt = 1
    start_from_default: bool = True
    hyperband_factor: int = Field(3, ge=2)
    hyperband_iterations: PositiveInt = 1
    bayesian_initial_points: PositiveInt | None = None
    max_consecutive_failed_trials: PositiveInt = 3


class EarlyStoppingSpec(Strict):
    monitor: str = "val_loss"
    patience: NonNegativeInt = 3
    min_delta: NonNegativeFloat = 0.0
    # "auto": the objective's direction when monitoring the objective, else Keras's guess.
    mode: Literal["auto", "min", "max"] = "auto"


class TrainingSpec(Strict):
    early_stopping: EarlyStoppingSpec | None = None
    verbose: bool = False


class ResourcesSpec(Strict):
    """Where and how trials run. `address: null` starts a local Ray (or uses RAY_ADDRESS)."""

    address: str | None = None
    cpus_per_trial: PositiveFloat = 1.0
    gpus_per_trial: NonNegativeFloat = 0.0
    max_concurrent_trials: PositiveInt = 1
    max_retries: NonNegativeInt = 2
    trials_per_worker: PositiveInt = 1
    logical_cpu_devices: PositiveInt | None = None


class ExportSpec(Strict):
    policy: Literal["best", "top_k", "none"] = "best"
    top_k: PositiveInt = 1
    formats: list[Literal["keras", "saved_model", "tflite"]] = ["keras", "saved_model"]
    model_name: str | None = None
    retrain: bool = False  # refit the chosen configuration on train + validation first

    @model_validator(mode="after")
    def _formats_not_empty(self) -> ExportSpec:
        if self.policy != "none" and not self.formats:
            raise ValueError("export.formats is empty; choose from keras, saved_model, tflite")
        return self


class JobSpec(Strict):
    """A whole job: data, search space, tuner, budget, resources, export."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    output_dir: str | None = None
    data: SerializeAsAny[PipelineConfig]
    search_space: SearchSpaceSpec
    tuner: TunerSpec = TunerSpec()
    training: TrainingSpec = TrainingSpec()
    resources: ResourcesSpec = ResourcesSpec()
    export: ExportSpec = ExportSpec()
    smoke: dict[str, Any] = {}

    def job_dir(self) -> Path:
        return Path(self.output_dir or f"runs/{self.name}")


def load_job(path: str | Path, overrides: list[str] = (), smoke: bool = False) -> JobSpec:
    """Reads, overrides and fully validates a job file; raises UserError on any problem."""
    path = Path(path)
    raw = read_yaml(path)
    if smoke:
        smoke_overrides = raw.get("smoke") or {}
        if not isinstance(smoke_overrides, dict):
            raise UserError(f"{path}: smoke: must be a mapping of 'dotted.key: value'")
        for key, value in smoke_overrides.items():
            set_dotted(raw, key, value, source=f"{path}: smoke")
        if "output_dir" not in smoke_overrides:  # keep smoke runs apart from real ones
            raw["output_dir"] = f"{raw.get('output_dir') or 'runs/' + str(raw.get('name'))}-smoke"
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(raw, key, value, source="--set")
    return validate_job(raw, source=str(path))


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"job file {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{path}:{where}: not valid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a job file must be a mapping of keys (name, data, ...)")
    return raw


def parse_override(item: str) -> tuple[str, Any]:
    """`tuner.max_trials=3` -> ("tuner.max_trials", 3); values are parsed as YAML."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. tuner.max_trials=3")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def set_dotted(raw: dict[str, Any], key: str, value: Any, source: str) -> None:
    node = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise UserError(f"{source}: cannot set {key!r}: {where!r} is not a mapping")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def validate_job(raw: dict[str, Any], source: str = "job", cross_check: bool = True) -> JobSpec:
    """Validates a raw job mapping, including the pipeline's and search space's own options.

    `cross_check=False` skips the checks that need the registries' heavy imports (used by
    workers re-reading an already validated spec).
    """
    raw = copy.deepcopy(raw)
    data = raw.get("data")
    pipeline_cls = None
    if isinstance(data, dict):
        name = data.setdefault("pipeline", "image_classification")
        pipeline_cls = _lookup(PIPELINES, name, f"{source}: data.pipeline")
        try:
            data = pipeline_cls.Config.model_validate(data)
        except ValidationError as e:
            raise UserError(
                format_validation_error(e, source, pipeline_cls.Config, "data")
            ) from None
        raw["data"] = data
    try:
        spec = JobSpec.model_validate(raw)
    except ValidationError as e:
        raise UserError(format_validation_error(e, source, JobSpec)) from None
    if cross_check:
        _check_cross_fields(spec, source)
    return spec


def _lookup(registry, name: str, where: str):
    try:
        return registry.get(name)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None


def _check_cross_fields(spec: JobSpec, source: str) -> None:
    hypermodel_cls = _lookup(SEARCH_SPACES, spec.search_space.name, f"{source}: search_space.name")
    pipeline_cls = PIPELINES.get(spec.data.pipeline)
    try:
        pipeline_cls.check_config(spec.data)
    except UserError as e:
        raise UserError(f"{source}: {e}") from None
    tasks = getattr(hypermodel_cls, "tasks", None)
    if tasks and pipeline_cls.task not in tasks:
        raise UserError(
            f"{source}: search_space.name {spec.search_space.name!r} models {', '.join(tasks)} "
            f"data, but data.pipeline {spec.data.pipeline!r} gives {pipeline_cls.task} data"
        )
    _check_options(hypermodel_cls, spec.search_space.options, source)
    if spec.export.retrain and not hasattr(pipeline_cls, "train_and_validation_data"):
        raise UserError(
            f"{source}: export.retrain is not supported by data.pipeline {spec.data.pipeline!r}"
        )
    metrics = ["loss", *getattr(hypermodel_cls, "metrics", ["accuracy"])]
    allowed = metrics + [f"val_{m}" for m in metrics]
    _check_metric(spec.tuner.objective.name, "tuner.objective.name", allowed, source)
    if spec.training.early_stopping:
        _check_metric(
            spec.training.early_stopping.monitor, "training.early_stopping.monitor", allowed, source
        )
    if spec.resources.cpus_per_trial < 1 and spec.resources.logical_cpu_devices:
        raise UserError(f"{source}: resources.logical_cpu_devices needs cpus_per_trial >= 1")


def _check_options(hypermodel_cls, options: dict[str, Any], source: str) -> None:
    params = inspect.signature(hypermodel_cls.__init__).parameters
    catch_all = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    allowed = [
        n for n, p in params.items() if n not in ("self", "meta") and p.kind not in catch_all
    ]
    for key in options:
        if key not in allowed:
            raise UserError(
                f"{source}: search_space.options: unknown option {key!r}; "
                f"allowed: {', '.join(allowed) or '(none)'}"
            )


def _check_metric(name: str, key: str, allowed: list[str], source: str) -> None:
    if name not in allowed:
        raise UserError(f"{source}: {key}: {name!r} is not a metric; allowed: {', '.join(allowed)}")


def format_validation_error(
    err: ValidationError, source: str, model: type[BaseModel], prefix: str = ""
) -> str:
    """One line per problem: `source: key.path: what is wrong (got value)`."""
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        key = ".".join(([prefix] if prefix else []) + loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            allowed = ", ".join(parent.model_fields) if parent else "see docs"
            where = ".".join(([prefix] if prefix else []) + loc[:-1]) or "job"
            lines.append(f"{source}: unknown key {loc[-1]!r} in {where}; allowed keys: {allowed}")
        elif e["type"] == "missing":
            lines.append(f"{source}: {key}: required key is missing")
        else:
            msg = re.sub(r"^Value error, ", "", e["msg"])
            lines.append(f"{source}: {key}: {msg} (got {e.get('input')!r})")
    return "\n".join(lines)


def _model_at(model: type[BaseModel], loc: list[str]) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = _base_model_in(field.annotation)
        if model is None:
            return None
    return model


def _base_model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) or origin is typing.Annotated:
        for arg in typing.get_args(annotation):
            found = _base_model_in(arg)
            if found:
                return found
    return None
