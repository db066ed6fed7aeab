"""Job files: YAML -> validated `JobSpec`, with `--set` overrides and the `smoke` variant.

Everything is validated before any work starts; every problem becomes one line that names the
key, the bad value and what is allowed.
"""

from __future__ import annotations

import copy
import inspect
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import (
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
from harness.pruning import PruningSpec
from harness.validation_errors import format_validation_error
from harness_core.schema import NumbersNotBooleans
from pipelines import PIPELINES
from pipelines.base import PipelineConfig
from search_spaces import SEARCH_SPACES
from search_spaces.options import NoOptions, SpaceInfo

ALGORITHMS = ("random", "bayesian", "tpe", "hyperband", "grid")


class Strict(NumbersNotBooleans):
    model_config = ConfigDict(extra="forbid")


class SearchSpaceSpec(Strict):
    """Which hypermodel to search, hyperparameters pinned to a value (`fixed`) or narrowed to
    some of their values (`choices`), constructor options."""

    name: str
    fixed: dict[str, bool | int | float | str] = {}
    choices: dict[str, list[bool | int | float | str]] = {}
    options: dict[str, Any] = {}


class ObjectiveSpec(Strict):
    name: str = "val_accuracy"
    direction: Literal["max", "min"] = "max"


class TunerSpec(Strict):
    """The Keras Tuner oracle and the search budget."""

    algorithm: Literal["random", "bayesian", "tpe", "hyperband", "grid"] = "bayesian"
    max_trials: PositiveInt = 10
    epochs: PositiveInt = 10
    time_budget_s: PositiveFloat | None = None
    objective: ObjectiveSpec = ObjectiveSpec()
    seed: NonNegativeInt = 1
    start_from_default: bool = True
    hyperband_factor: int = Field(3, ge=2)
    hyperband_iterations: PositiveInt = 1
    # Random draws before the model: the Bayesian oracle (default 3 per hyperparameter) and
    # TPE (default 10).
    bayesian_initial_points: PositiveInt | None = None
    max_consecutive_failed_trials: PositiveInt = 3
    # Stop losing trials early (ASHA or the median rule); see harness/pruning.py.
    pruning: PruningSpec = PruningSpec()
    # A trial running longer than this (from submission) is stopped and FAILED.
    trial_time_limit_s: PositiveFloat | None = None

    @model_validator(mode="after")
    def _pruning_fits_algorithm(self) -> TunerSpec:
        if self.algorithm == "hyperband" and self.pruning.rule != "none":
            raise ValueError(
                "hyperband already stops losing trials (successive halving); "
                "tuner.pruning applies to random, bayesian, tpe and grid"
            )
        return self


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
    # Warm workers: one process per concurrent trial slot runs trial after trial (TensorFlow
    # imported once). A number here replaces a slot's process after that many trials.
    trials_per_worker: PositiveInt | None = None
    logical_cpu_devices: PositiveInt | None = None


class ExportSpec(Strict):
    policy: Literal["best", "top_k", "none"] = "best"
    top_k: PositiveInt = 1
    formats: list[Literal["keras", "saved_model", "tflite"]] = ["keras", "saved_model"]
    model_name: str | None = None
    retrain: bool = False  # refit the chosen configuration on train + validation first
    # The refit's epochs (its full schedule); default: the trial's best epoch + 1.
    retrain_epochs: PositiveInt | None = None
    # Wall-clock seconds for the refit: fewer epochs (a whole, shorter schedule) when
    # `retrain_epochs` would not fit, sized by timing the chosen model's own steps first.
    # Without `retrain` it has nothing to bound (`--set export.retrain=false` keeps it, unused).
    retrain_time_budget_s: PositiveInt | None = None

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
        """`output_dir` (`~` expanded, as data paths are; a relative one is relative to the
        directory harness runs in), else runs/<name> there."""
        return Path(self.output_dir or f"runs/{self.name}").expanduser()

    def worker_form(self) -> dict[str, Any]:
        """The job as its trials' workers receive it (JSON): with the data directory the
        driver resolved, which workers, maybe on other nodes, read from."""
        from pipelines.tfds_source import resolve_data_dir

        job = self.model_dump(mode="json")
        if "data_dir" in job["data"]:
            job["data"]["data_dir"] = str(resolve_data_dir(self.data.data_dir))
        return job


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


def _lookup(registry, name: str, where: str, method=None):
    """`registry.get(name)` (or `method(name)`), its UserError prefixed with `where`."""
    try:
        return (method or registry.get)(name)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None


def _check_cross_fields(spec: JobSpec, source: str) -> None:
    info = _check_search_space(spec.search_space, source)
    pipeline_cls = PIPELINES.get(spec.data.pipeline)
    try:
        pipeline_cls.check_config(spec.data)
    except UserError as e:
        raise UserError(f"{source}: {e}") from None
    if info.tasks and pipeline_cls.task not in info.tasks:
        raise UserError(
            f"{source}: search_space.name {spec.search_space.name!r} models "
            f"{', '.join(info.tasks)} data, but data.pipeline {spec.data.pipeline!r} gives "
            f"{pipeline_cls.task} data"
        )
    if spec.export.retrain and not pipeline_cls.supports_refit:
        raise UserError(
            f"{source}: export.retrain is not supported by data.pipeline {spec.data.pipeline!r}"
        )
    if "tflite" in spec.export.formats and not pipeline_cls.supports_tflite:
        raise UserError(
            f"{source}: export.formats tflite is not supported by data.pipeline "
            f"{spec.data.pipeline!r} (its models take raw strings, which TFLite cannot convert)"
        )
    metrics = ["loss", *info.metrics]
    allowed = metrics + [f"val_{m}" for m in metrics]
    _check_metric(spec.tuner.objective.name, "tuner.objective.name", allowed, source)
    if spec.training.early_stopping:
        _check_metric(
            spec.training.early_stopping.monitor, "training.early_stopping.monitor", allowed, source
        )
    pruning = spec.tuner.pruning
    if spec.training.early_stopping and pruning.rule == "asha" and pruning.anneal_at_rungs:
        raise UserError(
            f"{source}: training.early_stopping with tuner.pruning.anneal_at_rungs: the learning "
            "rate starts over high after each rung, which early stopping would count as epochs "
            "without progress and stop the trial; use one or the other"
        )
    if spec.resources.cpus_per_trial < 1 and spec.resources.logical_cpu_devices:
        raise UserError(f"{source}: resources.logical_cpu_devices needs cpus_per_trial >= 1")
    _check_output_dir(spec.job_dir(), source)


def _check_search_space(space: SearchSpaceSpec, source: str) -> SpaceInfo:
    """The space's declaration, with `options` checked against it.

    Registered spaces are declared in `search_spaces.options`, so this imports no TensorFlow;
    a user's `package.module:Class` is imported and read.
    """
    where = f"{source}: search_space.name"
    info = _lookup(SEARCH_SPACES, space.name, where, SEARCH_SPACES.info)
    if info is None:
        hypermodel_cls = _lookup(SEARCH_SPACES, space.name, where)
        _check_hypermodel(hypermodel_cls, space.name, where)
        _check_signature_options(hypermodel_cls, space.options, source)
        return SpaceInfo(
            tasks=tuple(getattr(hypermodel_cls, "tasks", ())),
            metrics=tuple(getattr(hypermodel_cls, "metrics", ["accuracy"])),
            options=NoOptions,  # checked above, against the constructor
        )
    try:
        info.options.model_validate(space.options)
    except ValidationError as e:
        raise UserError(
            format_validation_error(e, source, info.options, "search_space.options")
        ) from None
    return info


def _check_hypermodel(obj: Any, name: str, where: str) -> None:
    # Without keras_tuner imported (by the user's module), `obj` cannot subclass HyperModel;
    # asking so keeps a wrong path like 'json:JSONDecoder' from importing TensorFlow.
    kt = sys.modules.get("keras_tuner")
    if isinstance(obj, type) and kt is not None and issubclass(obj, kt.HyperModel):
        from search_spaces.base import SearchSpace  # its module imported Keras already

        if issubclass(obj, SearchSpace):
            return
        raise UserError(
            f"{where}: {name!r} is a keras_tuner.HyperModel but not a search_spaces.base."
            "SearchSpace: subclass SearchSpace (it adds the training plan, serving and hooks "
            "the harness calls; `build(hp)` stays yours)"
        )
    raise UserError(
        f"{where}: {name!r} is not a hypermodel class; it must subclass "
        "search_spaces.base.SearchSpace (a keras_tuner.HyperModel)"
    )


def _check_signature_options(hypermodel_cls, options: dict[str, Any], source: str) -> None:
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


def _check_output_dir(job_dir: Path, source: str) -> None:
    """Raises UserError unless the job directory exists or can be created, and is writable.

    Probed by creating (and removing) a folder in it or its nearest existing parent:
    permission bits do not tell (root, read-only mounts, /proc).
    """
    base = job_dir.absolute()
    try:
        while not base.exists():
            base = base.parent
        if not base.is_dir():
            raise UserError(f"{source}: output_dir: cannot create {job_dir}: {base} is a file")
        os.rmdir(tempfile.mkdtemp(prefix=".harness-probe-", dir=base))
    except OSError as e:
        raise UserError(
            f"{source}: output_dir: cannot create {job_dir} (writing in {base}: {e.strerror})"
        ) from None


def _check_metric(name: str, key: str, allowed: list[str], source: str) -> None:
    if name not in allowed:
        raise UserError(f"{source}: {key}: {name!r} is not a metric; allowed: {', '.join(allowed)}")


def resume_spec(job_dir) -> JobSpec:
    """The spec a job directory (`harness.jobdir.JobDir`) was started with: its job.json,
    through today's schema."""
    return validate_job(job_dir.read_spec(), source=str(job_dir.spec_path))
