"""Files written atomically (never half-written, whoever dies mid-write) and strict JSON."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness_core.errors import UserError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_text(path: Path, text: str) -> None:
    """Writes via a temporary file in the same folder and `os.replace`: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # as open() would: mkstemp's 0600 hides records
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if e.filename:
            raise
        # A failed write (a full disk) names no file: name the one being written.
        raise OSError(e.errno, e.strerror, str(path)) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` for a writer that needs a file name (Keras weights,
    matplotlib); on success it replaces `path` in one `os.replace`, on failure it is deleted.
    It ends like `path`, so writers that go by the extension (".weights.h5", ".png") work."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Strict JSON (a non-finite float becomes null, never a bare NaN), written atomically."""
    text = json.dumps(_finite(obj), indent=2, sort_keys=True, default=str, allow_nan=False)
    atomic_write_text(path, text)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def read_json(path: Path, default: Any = None) -> Any:
    """The file's JSON; `default` when it is not there. A file that is there but not JSON (the
    writers here are atomic: edited by hand, or damaged) is a UserError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return default
    except json.JSONDecodeError as e:
        where = f"{e.msg}: line {e.lineno} column {e.colno}"
        raise UserError(f"{path}: damaged, not JSON ({where})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: damaged, not JSON (not UTF-8 text)") from None
