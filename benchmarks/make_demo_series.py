"""Writes a demo multivariate hourly series (daily and yearly cycles, weather-like) as CSV.

Usage: python benchmarks/make_demo_series.py OUT.csv [--hours 20000] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def series(hours: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(hours, dtype=np.float64)
    day, year = 2 * np.pi * t / 24, 2 * np.pi * t / (24 * 365.25)
    weather = np.cumsum(rng.normal(0, 0.15, hours))  # slow random drift shared by columns
    temperature = 10 + 8 * np.sin(year) + 4 * np.sin(day - 2) + weather + rng.normal(0, 0.5, hours)
    pressure = 1010 - 3 * weather + rng.normal(0, 1.0, hours)
    humidity = np.clip(70 - 2 * (temperature - 10) + rng.normal(0, 3, hours), 5, 100)
    return {"time": t, "temperature": temperature, "pressure": pressure, "humidity": humidity}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--hours", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    columns = series(args.hours, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = np.column_stack(list(columns.values()))
    np.savetxt(
        args.out,
        data,
        delimiter=",",
        header=",".join(columns),
        comments="",
        fmt=["%d"] + ["%.3f"] * (len(columns) - 1),
    )
    print(f"wrote {args.hours} rows to {args.out}")


if __name__ == "__main__":
    main()
