"""A job file on disk: YAML read with one-line errors, the `smoke:` variant, `--set` overrides;
then `harness.job.validate_job` checks the result against the schema."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UserError
from harness.job import JobSpec, validate_job


def load_job(path: str | Path, overrides: list[str] = (), smoke: bool = False) -> JobSpec:
    """Reads, overrides and fully validates a job file; raises UserError on any problem.

    The `smoke` variant is validated too when not asked for: a misspelled smoke key should
    fail now, not in the next `--smoke` run.
    """
    path = Path(path)
    raw = read_yaml(path)
    spec = validate_job(_variant(raw, path, overrides, smoke), source=str(path))
    if not smoke and raw.get("smoke"):
        validate_job(_variant(raw, path, overrides, smoke=True), source=f"{path}: smoke")
    return spec


def _variant(raw: dict[str, Any], path: Path, overrides: list[str], smoke: bool) -> dict:
    """The raw job with its smoke overrides (when `smoke`), then the --set overrides, then
    (when `smoke` and the smoke block does not set output_dir) "-smoke" on output_dir."""
    raw = copy.deepcopy(raw)
    if smoke:
        if not raw.get("smoke"):  # else the whole job would run under a smoke run's name
            raise UserError(f"--smoke: {path} has no smoke: section to shrink the job with")
        smoke_overrides = raw["smoke"]
        if not isinstance(smoke_overrides, dict):
            raise UserError(f"{path}: smoke: must be a mapping of 'dotted.key: value'")
        for key, value in smoke_overrides.items():
            set_dotted(raw, str(key), value, source=f"{path}: smoke")
    for item in overrides:
        key, value = parse_override(item)
        set_dotted(raw, key, value, source="--set")
    # After --set, so `--smoke --set output_dir=X` writes to X-smoke, never to a real job's dir
    if smoke and "output_dir" not in raw["smoke"]:  # keep smoke runs apart from real ones
        raw["output_dir"] = f"{raw.get('output_dir') or 'runs/' + str(raw.get('name'))}-smoke"
    return raw


def read_yaml(path: Path) -> dict[str, Any]:
    """The job file's top-level mapping; UserError when it is missing, unreadable or not YAML."""
    if path.is_dir():  # often a job directory, given where its job file belongs
        from harness.jobdir import JobDir

        hint = "; it is a job directory: harness resume continues it"
        raise UserError(
            f"{path}: a directory, not a job file (YAML){hint if JobDir(path).exists() else ''}"
        )
    if not path.is_file():
        raise UserError(f"job file {str(path)!r} does not exist")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as e:
        raise UserError(
            f"{path}: not a text (UTF-8) file: byte {e.object[e.start]:#04x} at offset {e.start}"
        ) from None
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{path}:{where}: not valid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a job file must be a mapping of keys (name, data, ...)")
    return raw


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error: plain YAML keeps
    the last, so a second `tuner:` section would replace the first one whole, silently."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    problem=f"the key {key!r} appears twice in one mapping",
                    problem_mark=key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_override(item: str) -> tuple[str, Any]:
    """`tuner.max_trials=3` -> ("tuner.max_trials", 3); values are parsed as YAML."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. tuner.max_trials=3")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def set_dotted(raw: dict[str, Any], key: str, value: Any, source: str) -> None:
    node = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise UserError(f"{source}: cannot set {key!r}: {where!r} is not a mapping")
        node = child
    node[parts[-1]] = copy.deepcopy(value)
