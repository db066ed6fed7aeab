"""User text files (CSV or JSONL, optionally gzipped) -> rows of (text, label), one per example.

Parsed with the standard library; every problem is one UserError naming the file and the line,
so a bad row stops the job before any trial.
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness_core.errors import UserError


def file_format(path: str) -> str | None:
    """ "csv" or "jsonl" from the file name (a `.gz` suffix is looked through), else None."""
    name = path.lower().removesuffix(".gz")
    return next((fmt for fmt in ("csv", "jsonl") if name.endswith(f".{fmt}")), None)


@dataclass
class Rows:
    """Parsed examples of one user file; `lines` name each example's line in errors."""

    path: Path
    lines: list[int]
    texts: list[str]
    labels: list[int | str]


def read_rows(path: Path, text_field: str, label_field: str) -> Rows:
    """Every example of a CSV/JSONL file; UserError naming the file and line otherwise."""
    if not path.is_file():
        raise UserError(f"{path}: no such file (data.files)")
    records = _csv_records(path) if file_format(path.name) == "csv" else _jsonl_records(path)
    rows = Rows(path, [], [], [])
    for line, record in records:
        text, label = _example(path, line, record, text_field, label_field)
        rows.lines.append(line)
        rows.texts.append(text)
        rows.labels.append(label)
    if not rows.texts:
        raise UserError(f"{path}: no examples")
    return rows


def _lines(path: Path) -> Iterator[str]:
    """Decoded lines of a UTF-8 file, gunzipped when it ends in .gz."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    line = 0
    try:
        with opener(path, "rb") as f:
            for line, raw in enumerate(f, 1):
                yield raw.decode("utf-8-sig" if line == 1 else "utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: line {line}: not UTF-8 text ({e.reason})") from None
    except (OSError, EOFError, zlib.error) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{path}: corrupt or truncated after line {line} ({reason})") from None


def _jsonl_records(path: Path) -> Iterator[tuple[int, Any]]:
    for line, text in enumerate(_lines(path), 1):
        if not text.strip():  # a blank line (e.g. a trailing newline) is not an example
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: line {line}: not valid JSON ({e.msg})") from None
        yield line, record


def _csv_records(path: Path) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(_lines(path))
    try:
        if reader.fieldnames is None:
            return
        reader.fieldnames = [name.strip() for name in reader.fieldnames]  # `text, label`
        for record in reader:
            yield reader.line_num, record
    except csv.Error as e:
        raise UserError(f"{path}: line {reader.line_num}: not valid CSV ({e})") from None


def _example(
    path: Path, line: int, record: Any, text_field: str, label_field: str
) -> tuple[str, int | str]:
    where = f"{path}: line {line}"
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(record).__name__}")
    text, label = record.get(text_field), record.get(label_field)
    if text_field not in record or label_field not in record:
        missing = text_field if text_field not in record else label_field
        raise UserError(f"{where}: no field {missing!r} (has: {', '.join(map(str, record))})")
    if not isinstance(text, str):
        raise UserError(f"{where}: field {text_field!r} holds {str(text)[:40]}, not text")
    if not text.strip():
        raise UserError(f"{where}: empty text in field {text_field!r}")
    if isinstance(label, float) and label.is_integer():  # 1.0, as pandas writes an int column
        label = int(label)
    if isinstance(label, bool) or not isinstance(label, int | str) or str(label).strip() == "":
        raise UserError(f"{where}: label {label!r} in field {label_field!r} is not an int or name")
    # Spaces around a name are not part of it ("pos " and "pos" are one class).
    return text, label.strip() if isinstance(label, str) else label
