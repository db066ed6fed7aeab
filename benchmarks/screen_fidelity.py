"""Screen fidelity: how well an ASHA rung's score ranks configurations by where they end.

Usage (real data imported into HARNESS_DATA_DIR):
    python benchmarks/screen_fidelity.py jobs/fashion_mnist_cnn.yaml --configs 6 \\
        --rungs 0.25,1 --out results/fidelity [--seed 11] [--set KEY=VALUE ...]

Draws `--configs` configurations from the job's space (Keras Tuner's random oracle, seeded
from `--seed`) and trains each twice, in this process, on the job's data, from the same initial
weights, for the job's `tuner.epochs`, validating at each rung of `--rungs` and each epoch's end:
- **plain**: one schedule over all epochs, as a trial without restarts trains: a rung inside it
  scores weights mid-schedule, at a high learning rate;
- **restarts**: the schedule started over at each rung (`tuner.pruning.anneal_at_rungs`): each
  stretch warms up and anneals, so a rung scores annealed weights.
Reports, for each rung of each kind, the Spearman rank correlation of the rung's scores with the
final scores (the plain runs' and the run's own kind's), where the rung ranks the best final
run, and how the restarts' final scores compare with the plain ones (what restarts cost).
Writes `<out>/fidelity.json` after every run (an interrupted study keeps what it measured).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness import tf_env  # noqa: E402

tf_env.apply()


def draw_configs(space, count: int, seed: int) -> list[dict]:
    import keras_tuner as kt

    oracle = kt.oracles.RandomSearchOracle(
        objective=kt.Objective("val_accuracy", "max"),
        max_trials=count,
        hyperparameters=space,
        seed=seed,
    )
    configs = []
    for _ in range(count):
        hp = space.copy()
        hp.values = oracle._random_values()  # the draws a random search would make
        configs.append(hp.get_config())
    return configs


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def parse_rungs(text: str, epochs: int, per_epoch: int) -> list[float]:
    """`--rungs` as epochs; ValueError unless each falls inside the schedule, a fraction on a
    step of its own (`harness.pruning.rung_steps`)."""
    from harness.pruning import rung_steps

    problem = (
        f"--rungs {text}: each rung must be a number of epochs inside the {epochs} epochs, "
        f"a fraction on a step of its own ({per_epoch} steps an epoch)"
    )
    try:
        rungs = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise ValueError(problem) from None
    scorable = rung_steps([r for r in rungs if 0 < r < epochs], per_epoch)  # no inf, nan
    if not rungs or any(r not in scorable for r in rungs):
        raise ValueError(problem)
    return rungs


def summarize(runs: list[dict], points: list[float], direction: str = "max") -> dict:
    """Each rung's scores against the final ones (`direction`: the objective's, "min" for a
    loss); "restarts final - plain final" is in the metric's own units, whichever way."""
    better = 1 if direction == "max" else -1
    summary = {}
    finals = {kind: [r[kind]["scores"][-1][1] for r in runs] for kind in ("plain", "restarts")}
    best = max(range(len(runs)), key=lambda i: better * finals["plain"][i])
    pick = max if direction == "max" else min
    for kind in ("plain", "restarts"):
        for index, point in enumerate(points[:-1]):
            scores = [r[kind]["scores"][index][1] for r in runs]
            ranked = sorted((better * s for s in scores), reverse=True)
            summary[f"{kind} at {point:g} epochs"] = {
                "spearman_vs_plain_final": spearman(scores, finals["plain"]),
                "spearman_vs_own_final": spearman(scores, finals[kind]),
                "rank_of_best_plain_final": ranked.index(better * scores[best]) + 1,
            }
    diffs = [r - p for r, p in zip(finals["restarts"], finals["plain"], strict=True)]
    summary["restarts final - plain final"] = {
        "mean": sum(diffs) / len(diffs),
        "each": diffs,
        "best_of_each": [pick(finals["restarts"]), pick(finals["plain"])],
    }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", type=Path)
    parser.add_argument("--configs", type=int, default=6)
    parser.add_argument("--rungs", default="0.25,1", help="ASHA's rungs, in epochs")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=Path("results/fidelity"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import keras
    import keras_tuner as kt

    from harness.job_file import load_job
    from harness.pruning import rung_steps
    from harness.space import job_space, make_hypermodel
    from pipelines import PIPELINES

    spec = load_job(args.job, list(args.set))
    pipeline = PIPELINES.get(spec.data.pipeline)(spec.data)
    meta = pipeline.describe()
    data = pipeline.train_data(None)
    hypermodel = make_hypermodel(spec, meta)
    space = job_space(hypermodel, spec.search_space.fixed, None, spec.search_space.choices)
    epochs, per_epoch = spec.tuner.epochs, data.steps_per_epoch
    try:
        rungs = parse_rungs(args.rungs, epochs, per_epoch)
    except ValueError as e:
        parser.error(str(e))
    points = sorted({*rungs, *range(1, epochs + 1)})
    steps = {e * per_epoch + s: point for point, (e, s) in rung_steps(points, per_epoch).items()}
    restarts = tuple(sorted(s for s, p in steps.items() if p in rungs))
    name = spec.tuner.objective.name
    results = {
        "job": str(args.job),
        "epochs": epochs,
        "steps_per_epoch": per_epoch,
        "rungs": rungs,
        "restart_steps": list(restarts),
        "runs": [],
    }

    class Validate(keras.callbacks.Callback):
        """Validates after each point's step: (point, score) pairs."""

        def __init__(self):
            super().__init__()
            self.step, self.scores = 0, []

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1
            if self.step in steps:
                logs = self.model.evaluate(data.validation, verbose=0, return_dict=True)
                self.scores.append((steps[self.step], float(logs[name.removeprefix("val_")])))

    def train(config: dict, seed: int, plan_restarts: tuple[int, ...]) -> dict:
        keras.utils.set_random_seed(seed)
        hp = kt.HyperParameters.from_config(copy.deepcopy(config))  # from_config edits it
        hypermodel.set_training_plan(epochs, per_epoch, restarts=plan_restarts)
        model = hypermodel.build(hp)
        validate = Validate()
        t = time.perf_counter()
        model.fit(
            data.train, steps_per_epoch=per_epoch, epochs=epochs, callbacks=[validate], verbose=0
        )
        keras.backend.clear_session()
        return {"scores": validate.scores, "fit_s": time.perf_counter() - t}

    for index, config in enumerate(draw_configs(space, args.configs, args.seed)):
        run = {"values": config["values"]}
        for kind, plan_restarts in (("restarts", restarts), ("plain", ())):
            run[kind] = train(config, 1000 + index, plan_restarts)
            shown = ", ".join(f"{p:g}: {v:.4f}" for p, v in run[kind]["scores"])
            print(f"config {index} {kind}: {shown} ({run[kind]['fit_s']:.0f} s)", flush=True)
        results["runs"].append(run)
        (args.out / "fidelity.json").write_text(json.dumps(results, indent=2))
    results["summary"] = summarize(results["runs"], points, spec.tuner.objective.direction)
    (args.out / "fidelity.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results["summary"], indent=2))


if __name__ == "__main__":
    main()
