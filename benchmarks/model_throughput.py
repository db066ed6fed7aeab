"""Training throughput (images/second) of image_cnn search-space points on this machine.

Usage:
    python benchmarks/model_throughput.py [--threads 2] [--batch 128] [--steps 60] [--json out]

Each point is built by the real search space (28x28x1 inputs, 10 classes) and trained on
in-memory tensors, so the figure is the model's cost alone; the time of the first steps
(tracing) is left out. Used to size the shipped Fashion-MNIST job: epochs x 60,000 / rate is
the wall time a refit or a trial takes. Run it alone: on 2 cores anything else skews it.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from harness import tf_env  # noqa: E402

tf_env.apply()  # TensorFlow's allocator as the harness's processes run it

POINTS = {
    "tutorial": {},
    "plain_bn": {"batch_norm": True},
    "plain_bn_wide": {"batch_norm": True, "filters_0": 64, "filters_1": 128, "filters_2": 128},
    "vgg2_32": {"family": "vgg", "vgg_blocks": 2, "vgg_filters": 32},
    "vgg2_48": {"family": "vgg", "vgg_blocks": 2, "vgg_filters": 48},
    "vgg3_32": {"family": "vgg", "vgg_blocks": 3, "vgg_filters": 32},
    "vgg2_64": {"family": "vgg", "vgg_blocks": 2, "vgg_filters": 64},
}


def measure(values: dict, batch: int, steps: int) -> float:
    import keras
    import keras_tuner as kt
    import numpy as np
    import tensorflow as tf

    from pipelines.base import DataMeta
    from search_spaces.image_cnn import ImageCNN

    keras.backend.clear_session()
    meta = DataMeta(
        task="image_classification",
        input_shape=(28, 28, 1),
        num_classes=10,
        class_names=[str(i) for i in range(10)],
        num_train=60000,
        num_validation=0,
        num_test=0,
        fingerprint="throughput",
    )
    space = ImageCNN(meta)
    space.set_training_plan(10, 400)
    hp = kt.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    model = space.build(hp)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (batch * 8, 28, 28, 1)).astype("uint8")
    y = rng.integers(0, 10, batch * 8)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache().repeat()
    model.fit(data, steps_per_epoch=10, epochs=1, verbose=0)  # tracing, warm-up
    t = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--points", nargs="*", default=list(POINTS))
    parser.add_argument("--json")
    args = parser.parse_args()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    results = {}
    for name in args.points:
        rate = measure(POINTS[name], args.batch, args.steps)
        results[name] = rate
        print(f"{name:14s} {rate:8.0f} img/s  {60000 / rate:6.1f} s per 60k epoch", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "batch": args.batch, "img_per_s": results}, f)


if __name__ == "__main__":
    main()
