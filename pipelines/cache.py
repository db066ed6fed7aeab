"""Dataset caches keyed by a fingerprint of (source, split, preprocessing).

Trials with the same preprocessing share one cache; any change of preprocessing gives a new key
and so a new cache. A disk cache is written completely in a private temporary folder and then
renamed into place, so a killed process never leaves a half-written cache that a later run reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any


def cache_key(**parts: Any) -> str:
    """A short stable hash of everything that determines the cached elements."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def cached(ds, mode: str, directory: Path | None, key: str):
    """Applies the cache `mode` ("memory", "disk" or "none") to `ds`."""
    if mode == "memory":
        return ds.cache()
    if mode == "disk":
        return disk_cache(ds, Path(directory), key)
    return ds


def disk_cache(ds, directory: Path, key: str):
    """Reads `ds` from a complete on-disk cache under `directory/key`, writing it first if needed.

    The first pass (decode, resize) runs once here; afterwards TensorFlow reads the cache files
    and never touches the source again.
    """
    final = directory / key
    if not (final / "COMPLETE").exists():
        _write(ds, directory, final)
    return ds.cache(str(final / "data"))


def _write(ds, directory: Path, final: Path) -> None:
    tmp = directory / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        count = sum(1 for _ in ds.cache(str(tmp / "data")))
        (tmp / "COMPLETE").write_text(f"{count}\n")
        if final.exists() and not (final / "COMPLETE").exists():
            shutil.rmtree(final, ignore_errors=True)  # not ours and never completed: stale
        try:
            os.rename(tmp, final)
        except OSError:  # another trial finished the same cache first: use theirs
            if not (final / "COMPLETE").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
