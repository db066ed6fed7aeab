"""Time to accuracy: the harness against plain Keras Tuner on the same space, data and budget.

Usage (real data imported into HARNESS_DATA_DIR):
    python benchmarks/time_to_accuracy.py jobs/fashion_mnist_cnn.yaml --budget-s 1800 \\
        --out results/tta [--baseline hyperband|bayesian|none] [--harness-oracles asha,random]

For each harness variant, runs `harness tune JOB` with `tuner.time_budget_s` set to the budget
(export included, so the exported model's test score is on the full test split), and reads
from the job directory every validation result with its time (each epoch's end from the trials'
TensorBoard logs, each trial's final objective from its record): best-so-far validation
objective against wall time since the command started, measured as the baseline's (a point at
every epoch's end). The baseline is what a user would do without the harness:
the job's search space and data tuned by `kt.Hyperband` or `kt.BayesianOptimization` with
`tuner.search` in one process, stopped at the same budget, from the harness's oracle seed for the
job's `tuner.seed` (so both sides draw the same random configurations); its best model is then
scored on the same test split. Writes `<out>/curves.json` and `<out>/curves.png` (all curves on
one plot).
`--harness-oracles` runs the harness once per oracle (random, bayesian, hyperband, asha =
random search with ASHA pruning, tpe = TPE with ASHA) for the oracle comparison at equal budget,
or not at all
(`none`); `--include` adds an earlier run's `curves.json` to the plot, so that the two sides of
a race can run at different times, each alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import children  # noqa: E402  benchmarks/children.py: a stop reaches the job too

from harness import tf_env  # noqa: E402

# The Keras Tuner baseline runs in this process: the same TensorFlow allocator as the harness's
# trials, so the race compares searches, not allocators.
tf_env.apply()

ORACLE_OVERRIDES = {
    "job": [],
    "random": ["tuner.algorithm=random", "tuner.pruning.rule=none"],
    # A short budget holds few trials: 4 random draws, then the Gaussian process proposes.
    "bayesian": [
        "tuner.algorithm=bayesian",
        "tuner.pruning.rule=none",
        "tuner.bayesian_initial_points=4",
    ],
    "hyperband": ["tuner.algorithm=hyperband", "tuner.pruning.rule=none"],
    "asha": ["tuner.algorithm=random", "tuner.pruning.rule=asha"],
    # Optuna's TPE after 10 random draws, with the same ASHA rule.
    "tpe": ["tuner.algorithm=tpe", "tuner.pruning.rule=asha"],
}


def run_harness(
    job: Path, budget_s: float, out: Path, variant: str, extra: list[str] | None = None
) -> dict:
    """One `harness tune` under the budget; its best-so-far curve and exported test score."""
    job_dir = out / f"harness-{variant}"
    overrides = [f"tuner.time_budget_s={budget_s}", f"output_dir={job_dir}"]
    overrides += ORACLE_OVERRIDES[variant] + list(extra or [])
    command = [sys.executable, "-m", "harness", "tune", str(job), "--overwrite"]
    for item in overrides:
        command += ["--set", item]
    started = time.time()
    log = (out / f"harness-{variant}.log").open("w")
    code = children.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.time() - started
    # Every validation the harness ran counts when it ran, as every epoch of the baseline's
    # trials does: epoch ends (and a pruned trial's partial epoch) from TensorBoard.
    points = [
        (t - started, value)
        for t, value in validation_points(job_dir / "tensorboard", objective_of(job, extra))
    ]
    for path in (job_dir / "trials").glob("*/run.json"):
        run = json.loads(path.read_text())
        trial = json.loads(
            (job_dir / "oracle" / f"trial_{path.parent.name}" / "trial.json").read_text()
        )
        # Pruned trials count too (their best epoch's score), as every epoch of the
        # baseline's trials does.
        if trial.get("score") is not None and trial["status"] != "FAILED":
            points.append((run["ended"] - started, trial["score"]))
    manifests = sorted((job_dir / "export").glob("*/*/manifest.json"))
    test = json.loads(manifests[0].read_text())["test_metrics"] if manifests else {}
    return {
        "name": f"harness ({variant})",
        "exit_code": code,
        "wall_s": wall,
        "curve": best_so_far(points),
        "test_metrics": test,
    }


def objective_of(job: Path, extra: list[str] | None) -> str:
    from harness.job_file import load_job

    return load_job(job, list(extra or [])).tuner.objective.name


def validation_points(board: Path, objective: str) -> list[tuple[float, float]]:
    """(wall time, value) of each epoch-end `objective` the trials logged to TensorBoard
    (Keras's callback: `val_accuracy` is `epoch_accuracy` in a trial's `validation` run)."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    folder, tag = "train", f"epoch_{objective}"
    if objective.startswith("val_"):
        folder, tag = "validation", f"epoch_{objective.removeprefix('val_')}"
    points = []
    for run in sorted(board.glob(f"trial_*/{folder}")):
        events = event_accumulator.EventAccumulator(
            str(run), size_guidance={event_accumulator.TENSORS: 0}
        )
        events.Reload()
        if tag in events.Tags()["tensors"]:
            points += [
                (e.wall_time, float(tensor_util.make_ndarray(e.tensor_proto)))
                for e in events.Tensors(tag)
            ]
    return points


def best_so_far(points: list[tuple[float, float]], maximize: bool = True) -> list[list[float]]:
    curve, best = [], None
    for t, value in sorted(points):
        if best is None or (value > best if maximize else value < best):
            best = value
            curve.append([t, value])
    return curve


def run_keras_tuner(
    job: Path, budget_s: float, out: Path, algorithm: str, extra: list[str] | None = None
) -> dict:
    """The baseline: plain Keras Tuner `search` in this process, same space and data."""
    import keras
    import keras_tuner as kt

    from harness.job_file import load_job
    from harness.oracles import oracle_seed
    from harness.space import job_space, make_hypermodel
    from pipelines import PIPELINES
    from pipelines.base import without_autotune_thread

    spec = load_job(job, list(extra or []))  # the same overrides as the harness runs
    started = time.time()
    pipeline = PIPELINES.get(spec.data.pipeline)(spec.data)
    meta = pipeline.describe()
    data = pipeline.train_data(None)  # as the harness's: without the autotune thread's stall
    hypermodel = make_hypermodel(spec, meta)
    build = hypermodel.build

    def build_on_plan(hp):
        # As in the harness's trials: schedules span the job's epochs, and a Hyperband round
        # continuing earlier weights takes its schedule up where they left off.
        initial = hp.values.get("tuner/initial_epoch", 0)
        hypermodel.set_training_plan(spec.tuner.epochs, data.steps_per_epoch, initial)
        return build(hp)

    hypermodel.build = build_on_plan
    objective = kt.Objective(spec.tuner.objective.name, spec.tuner.objective.direction)
    # The same space: the job's `fixed` and `choices` applied, as a user would declare them
    # with `hyperparameters=` (the data options stay as the job sets them).
    space = job_space(hypermodel, spec.search_space.fixed, None, spec.search_space.choices)
    common = dict(
        objective=objective,
        hyperparameters=space,
        directory=str(out / f"kt-{algorithm}"),
        overwrite=True,
        # The harness's oracle seed: both sides draw the same random configurations.
        seed=oracle_seed(spec.tuner.seed),
    )
    if algorithm == "hyperband":
        # Iterations enough to outlast the budget: one Hyperband iteration over 4-epoch trials
        # is only a handful of trials, after which `search` would return early.
        tuner = kt.Hyperband(
            hypermodel, max_epochs=spec.tuner.epochs, factor=3, hyperband_iterations=1000, **common
        )
    else:
        tuner = kt.BayesianOptimization(hypermodel, max_trials=10**6, **common)
    points: list[tuple[float, float]] = []

    class Budget(keras.callbacks.Callback):
        """Records each epoch's objective; stops the search when the budget is spent."""

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(spec.tuner.objective.name)
            if value is not None:
                points.append((time.time() - started, float(value)))
            if time.time() - started > budget_s:
                self.model.stop_training = True
                raise KeyboardInterrupt  # ends tuner.search; the trials so far are kept

    try:
        tuner.search(
            data.train,
            validation_data=data.validation,
            steps_per_epoch=data.steps_per_epoch,
            epochs=spec.tuner.epochs,
            callbacks=[Budget()],
            verbose=0,
        )
    except KeyboardInterrupt:
        pass
    wall = time.time() - started
    best = tuner.get_best_models(1)[0]
    test = best.evaluate(without_autotune_thread(pipeline.test_data()), return_dict=True, verbose=0)
    return {
        "name": f"keras-tuner ({algorithm})",
        "wall_s": wall,
        "curve": best_so_far(points),
        "test_metrics": {k: float(v) for k, v in test.items()},
    }


def plot(results: list[dict], path: Path, objective: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in results:
        if r["curve"]:
            t, v = zip(*r["curve"], strict=True)
            t, v = [*t, max(r["wall_s"], t[-1])], [*v, v[-1]]  # flat to the run's end
            ax.step([x / 60 for x in t], v, where="post", label=r["name"])
    ax.set_xlabel("wall time (minutes)")
    ax.set_ylabel(f"best {objective} so far")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", type=Path)
    parser.add_argument("--budget-s", type=float, default=1800)
    parser.add_argument("--out", type=Path, default=Path("results/time_to_accuracy"))
    parser.add_argument(
        "--baseline", choices=["hyperband", "bayesian", "none"], default="hyperband"
    )
    parser.add_argument(
        "--harness-oracles",
        default="job",
        help="comma-separated: job, random, bayesian, hyperband, asha; or none",
    )
    parser.add_argument(
        "--include",
        type=Path,
        action="append",
        default=[],
        metavar="CURVES_JSON",
        help="results of an earlier run to plot with these (e.g. the baseline run alone first)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a job override for every run (data and space apply to the baseline too), e.g. "
        "export.retrain=false to export the best trial's own weights, as the baseline's is",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = [r for path in args.include for r in json.loads(path.read_text())]
    variants = [] if args.harness_oracles == "none" else args.harness_oracles.split(",")
    for variant in variants:
        results.append(run_harness(args.job, args.budget_s, args.out, variant, args.set))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "curve"}), flush=True)
    if args.baseline != "none":
        results.append(run_keras_tuner(args.job, args.budget_s, args.out, args.baseline, args.set))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "curve"}), flush=True)
    (args.out / "curves.json").write_text(json.dumps(results, indent=2))
    plot(results, args.out / "curves.png", "validation objective")
    print(f"wrote {args.out / 'curves.json'} and {args.out / 'curves.png'}")


if __name__ == "__main__":
    main()
