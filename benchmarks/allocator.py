"""Training-step time under TensorFlow's two CPU allocators (`harness.tf_env`).

Usage:
    python benchmarks/allocator.py [--steps 40] [--threads 1] [--json out.json]

For each model, one fresh process per allocator (TensorFlow reads TF_CPU_ALLOCATOR_USE_BFC once
at start) trains `--steps` steps on in-memory random batches after 2 steps of tracing, and
reports milliseconds a step, minor page faults a step, user and kernel CPU a step, and the
process's peak RSS. The models are search-space points built by the real spaces:

- imdb_default: the shipped IMDB job's first trial (text_rnn's pooled family at its defaults:
  embedding 128, average pooling, dropout 0.5, Adam 1e-3) over a 200,000-token vocabulary and
  1,500 tokens, batch 64;
- imdb_small: the job's other corner, 100,000 tokens x 800, AdamW (weight decay 0.01), max pooling;
- fmnist_vgg: image_cnn's vgg family as the Fashion-MNIST job pins it (32 filters, 2 blocks),
  AdamW, batch 128.

Run it alone: on 2 cores anything else skews it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MODELS = {
    "imdb_default": {
        "task": "text",
        "vocab": 200_000,
        "length": 1500,
        "batch": 64,
        "values": {"family": "pooled"},
    },
    "imdb_small": {
        "task": "text",
        "vocab": 100_000,
        "length": 800,
        "batch": 64,
        "values": {"family": "pooled", "pooling": "max", "optimizer": "adamw"},
    },
    "fmnist_vgg": {
        "task": "image",
        "batch": 128,
        "values": {"family": "vgg", "vgg_filters": 32, "vgg_blocks": 2, "optimizer": "adamw"},
    },
}

# Runs in the child process: builds the model by its space, trains, prints one JSON line.
CHILD = r"""
import json, resource, sys, time
import numpy as np
import keras, keras_tuner as kt, tensorflow as tf
from pipelines.base import DataMeta

steps, threads = int(sys.argv[1]), int(sys.argv[2])
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(threads)
spec = json.loads(sys.argv[3])
rng = np.random.default_rng(0)
n = spec["batch"] * (steps + 2)
if spec["task"] == "text":
    from search_spaces.text_rnn import TextRNN as Space
    shape, extra = (spec["length"],), {"vocab_size": spec["vocab"]}
    x = rng.integers(1, spec["vocab"], size=(n, spec["length"]), dtype=np.int64)
    classes = 2
else:
    from search_spaces.image_cnn import ImageCNN as Space
    shape, extra = (28, 28, 1), {}
    x = rng.random((n, 28, 28, 1), dtype=np.float32)
    classes = 10
y = rng.integers(0, classes, size=n)
meta = DataMeta(task=spec["task"], input_shape=shape, num_classes=classes,
                class_names=[str(i) for i in range(classes)], num_train=n, num_validation=0,
                num_test=0, fingerprint="allocator", extra=extra)
space = Space(meta)
space.set_training_plan(1, steps + 2)
hp = kt.HyperParameters()
for key, value in spec["values"].items():
    hp.Fixed(key, value)
model = space.build(hp)
data = tf.data.Dataset.from_tensor_slices((x, y)).batch(spec["batch"])
model.fit(data.take(2), verbose=0)  # tracing
usage, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
model.fit(data.skip(2), verbose=0)
seconds = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "ms_per_step": 1000 * seconds / steps,
    "faults_per_step": (after.ru_minflt - usage.ru_minflt) / steps,
    "user_ms_per_step": 1000 * (after.ru_utime - usage.ru_utime) / steps,
    "kernel_ms_per_step": 1000 * (after.ru_stime - usage.ru_stime) / steps,
    "peak_rss_mb": after.ru_maxrss / 1024,
}))
"""


def measure(name: str, bfc: bool, steps: int, threads: int) -> dict:
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "TF_CPU_ALLOCATOR_USE_BFC": "true" if bfc else "false",
        "PYTHONPATH": str(REPO),
    }
    spec = json.dumps(MODELS[name])
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(steps), str(threads), spec],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow threads (a trial's)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    print(
        f"{'model':14} {'allocator':9} {'ms/step':>8} {'faults':>8} {'user':>7} {'kernel':>7} "
        f"{'RSS MB':>7}"
    )
    for name in args.models:
        for bfc in (False, True):
            row = {"model": name, "allocator": "bfc" if bfc else "malloc"}
            row.update(measure(name, bfc, args.steps, args.threads))
            rows.append(row)
            print(
                f"{name:14} {row['allocator']:9} {row['ms_per_step']:8.1f} "
                f"{row['faults_per_step']:8.0f} {row['user_ms_per_step']:7.1f} "
                f"{row['kernel_ms_per_step']:7.1f} {row['peak_rss_mb']:7.0f}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps({"steps": args.steps, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
