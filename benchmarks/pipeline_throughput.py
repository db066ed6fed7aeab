"""Input pipeline throughput vs what the models consume, on the real Fashion-MNIST and IMDB.

Usage (after `harness data import` of both datasets into the data dir):
    python benchmarks/pipeline_throughput.py --data-dir ~/tensorflow_datasets [--json out.json]

Reports examples/second of each pipeline alone (with and without augmentation, cold and warm
cache), of the tutorial CNN and a 64-unit LSTM training on in-memory tensors, the ratios, and a
training step fed by the real pipeline against one fed from tensors already in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from harness import tf_env  # noqa: E402

tf_env.apply()  # TensorFlow's allocator as the harness's processes run it

import keras  # noqa: E402
import keras_tuner as kt  # noqa: E402
import tensorflow as tf  # noqa: E402

from pipelines.base import DataMeta  # noqa: E402
from pipelines.image import ImageClassificationConfig, ImageClassificationPipeline  # noqa: E402
from pipelines.text import TextClassificationConfig, TextClassificationPipeline  # noqa: E402
from search_spaces.image_cnn import ImageCNN  # noqa: E402

AUGMENT = {
    "flip_horizontal": 0.5,
    "rotation": 0.05,
    "zoom": 0.1,
    "translation": 0.1,
    "crop_padding": 2,
    "brightness": 20.0,
    "contrast": (0.8, 1.2),
    "cutout": 0.5,
}


def rate(ds, batches: int, batch_size: int) -> float:
    """Examples per second over `batches` batches of an (already built) dataset."""
    it = iter(ds)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - start)


def one_pass_rate(ds) -> float:
    start, n = time.perf_counter(), 0
    for x, _ in ds:
        n += int(x.shape[0])
    return n / (time.perf_counter() - start)


def image_pipeline_rates(data_dir: str, batch: int) -> dict[str, float]:
    out = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        for name, options in {
            "memory cache, no augmentation": {},
            "memory cache, augmented": {"augment": AUGMENT},
            "disk cache, augmented": {"augment": AUGMENT, "cache": "disk", "cache_dir": cache_dir},
        }.items():
            config = ImageClassificationConfig(
                dataset="fashion_mnist",
                data_dir=data_dir,
                download=False,
                batch_size=batch,
                **options,
            )
            pipeline = ImageClassificationPipeline(config)
            data = pipeline.train_data()
            steps = data.steps_per_epoch
            # First epoch reads and decodes the source (cold); the next ones read the cache.
            out[f"fashion_mnist {name}, cold"] = rate(data.train, steps, batch)
            out[f"fashion_mnist {name}, warm"] = rate(data.train, steps, batch)
            if options.get("cache") == "disk":  # a fresh process-like rebuild reads the files
                data = ImageClassificationPipeline(config).train_data()
                out[f"fashion_mnist {name}, warm (reopened)"] = rate(data.train, steps, batch)
    return out


def cnn_consumption(batch: int, steps: int) -> tuple[float, keras.Model]:
    meta = DataMeta("image_classification", (28, 28, 1), 10, [], 0, 0, 0, "")
    model = ImageCNN(meta).build(kt.HyperParameters())
    x = tf.random.uniform((batch, 28, 28, 1), 0, 255)
    y = tf.random.uniform((batch,), 0, 10, tf.int64)
    return fit_rate(model, tf.data.Dataset.from_tensors((x, y)).repeat(), steps, batch), model


def fit_rate(model, ds, steps: int, batch: int) -> float:
    model.fit(ds, steps_per_epoch=5, epochs=1, verbose=0)  # trace first
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch / (time.perf_counter() - start)


def fed_by_pipeline(model, data_dir: str, batch: int, steps: int) -> tuple[float, float]:
    config = ImageClassificationConfig(
        dataset="fashion_mnist",
        data_dir=data_dir,
        download=False,
        batch_size=batch,
        augment=AUGMENT,
    )
    train = ImageClassificationPipeline(config).train_data().train
    x, y = next(iter(train))
    in_memory = tf.data.Dataset.from_tensors((x, y)).repeat()
    rate(train, 60_000 // batch, batch)  # warm the cache
    return fit_rate(model, train, steps, batch), fit_rate(model, in_memory, steps, batch)


def text_rates(data_dir: str, batch: int, seq_len: int) -> dict[str, float]:
    config = TextClassificationConfig(
        dataset="imdb_reviews",
        data_dir=data_dir,
        download=False,
        batch_size=batch,
        sequence_length=seq_len,
        vocab_size=10_000,
    )
    pipeline = TextClassificationPipeline(config)
    start = time.perf_counter()
    data = pipeline.train_data()
    setup = time.perf_counter() - start
    steps = data.steps_per_epoch
    return {
        "imdb vocabulary ready (s, adapt or cached)": setup,
        "imdb pipeline, cold": rate(data.train, steps, batch),
        "imdb pipeline, warm": rate(data.train, steps, batch),
    }


def lstm_consumption(batch: int, seq_len: int, steps: int) -> float:
    model = keras.Sequential(
        [
            keras.Input((seq_len,), dtype="int64"),
            keras.layers.Embedding(10_000, 128, mask_zero=True),
            keras.layers.LSTM(64),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = tf.random.uniform((batch, seq_len), 2, 10_000, tf.int64)
    y = tf.random.uniform((batch,), 0, 2, tf.int64)
    return fit_rate(model, tf.data.Dataset.from_tensors((x, y)).repeat(), steps, batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("HARNESS_DATA_DIR"))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--json")
    args = parser.parse_args()
    results: dict[str, float] = {}
    results.update(image_pipeline_rates(args.data_dir, args.batch))
    cnn, model = cnn_consumption(args.batch, args.steps)
    results["tutorial CNN consumes (in-memory tensors)"] = cnn
    piped, memory = fed_by_pipeline(model, args.data_dir, args.batch, args.steps)
    results["CNN fit fed by augmented pipeline"] = piped
    results["CNN fit fed by in-memory tensors"] = memory
    results.update(text_rates(args.data_dir, args.batch, args.seq_len))
    results["64-unit LSTM consumes (in-memory tensors)"] = lstm_consumption(
        args.batch, args.seq_len, max(20, args.steps // 10)
    )
    ratios = {
        "augmented fashion pipeline (warm) / CNN": (
            results["fashion_mnist memory cache, augmented, warm"] / cnn
        ),
        "warm imdb pipeline / LSTM": (
            results["imdb pipeline, warm"] / results["64-unit LSTM consumes (in-memory tensors)"]
        ),
        "pipeline-fed step slowdown (%)": 100 * (1 - piped / memory),
    }
    for name, value in {**results, **ratios}.items():
        print(f"{name:55s} {value:12.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "ratios": ratios, "args": vars(args)}, f, indent=2)


if __name__ == "__main__":
    main()
