"""Writes a demo 1-D signal classification dataset (an npz for `sequence_classification`).

Six waveform classes (sine, square, triangle, sawtooth, chirp, damped sine), each example
with a random frequency, phase, amplitude, offset and shift, plus Gaussian noise: what sensor
traces look like to a classifier, where shape matters and position does not.

Usage: python benchmarks/make_demo_signals.py OUT.npz [--train 6000] [--test 2000]
       [--length 128] [--noise 0.6] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

CLASSES = ("sine", "square", "triangle", "sawtooth", "chirp", "damped_sine")


def signals(n: int, length: int, noise: float, rng: np.random.Generator):
    """(x (n, length) float32, y (n,) int64)."""
    t = np.linspace(0.0, 1.0, length)[None, :]
    y = rng.integers(0, len(CLASSES), n)
    freq = rng.uniform(2.0, 6.0, (n, 1))
    phase = rng.uniform(0.0, 2 * np.pi, (n, 1))
    cycle = freq * t + phase / (2 * np.pi)  # cycles elapsed
    frac = cycle % 1.0
    shapes = {
        0: np.sin(2 * np.pi * cycle),
        1: np.sign(np.sin(2 * np.pi * cycle)),
        2: 4 * np.abs(frac - 0.5) - 1,
        3: 2 * frac - 1,
        4: np.sin(2 * np.pi * (freq * t * (0.5 + 1.5 * t)) + phase),
        5: np.exp(-3 * t) * np.sin(2 * np.pi * cycle) * 2,
    }
    x = np.zeros((n, length))
    for label, wave in shapes.items():
        x[y == label] = wave[y == label]
    x = x * rng.uniform(0.5, 2.0, (n, 1)) + rng.normal(0.0, 0.5, (n, 1))
    x = x + rng.normal(0.0, noise, x.shape)
    return x.astype(np.float32), y.astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--noise", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    x_train, y_train = signals(args.train, args.length, args.noise, rng)
    x_test, y_test = signals(args.test, args.length, args.noise, rng)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.out,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=np.array(CLASSES),
    )
    print(f"wrote {args.out}: {args.train} train / {args.test} test, length {args.length}")


if __name__ == "__main__":
    main()
