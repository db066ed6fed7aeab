"""Fingerprint-keyed caches: shared by equal preprocessing, rebuilt on change, never half-read."""

from __future__ import annotations

import tensorflow as tf

from pipelines.cache import cache_key, disk_cache


def counting_dataset(calls: list):
    def gen():
        calls.append(1)
        yield from range(6)

    return tf.data.Dataset.from_generator(gen, output_signature=tf.TensorSpec((), tf.int32))


def test_disk_cache_is_reused_for_the_same_key(tmp_path):
    calls: list = []
    key = cache_key(source="x", image_size=None)
    first = list(disk_cache(counting_dataset(calls), tmp_path, key).as_numpy_iterator())
    second = list(disk_cache(counting_dataset(calls), tmp_path, key).as_numpy_iterator())
    assert first == second == list(range(6))
    assert len(calls) == 1  # the source was read once


def test_changed_preprocessing_builds_a_new_cache(tmp_path):
    calls: list = []
    disk_cache(counting_dataset(calls), tmp_path, cache_key(image_size=(32, 32)))
    disk_cache(counting_dataset(calls), tmp_path, cache_key(image_size=(64, 64)))
    assert len(calls) == 2 and len([p for p in tmp_path.iterdir()]) == 2


def test_half_written_cache_is_never_read(tmp_path):
    key = cache_key(source="y")
    # What a killed writer leaves: a temporary folder, and a final folder without COMPLETE.
    (tmp_path / f".tmp-{key}-dead").mkdir()
    (tmp_path / key).mkdir()
    (tmp_path / key / "data.index").write_bytes(b"garbage")
    calls: list = []
    values = list(disk_cache(counting_dataset(calls), tmp_path, key).as_numpy_iterator())
    assert values == list(range(6)) and len(calls) == 1


def test_keys_differ_by_any_part():
    assert cache_key(a=1, b=2) == cache_key(b=2, a=1)
    assert cache_key(a=1) != cache_key(a=2)
