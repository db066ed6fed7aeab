"""Job files: every shipped job validates; every kind of mistake is one clear line."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path

import pytest
import yaml

from harness.errors import UserError
from harness.job import validate_job
from harness.job_file import load_job, parse_override, read_yaml
from search_spaces import SEARCH_SPACES
from tests.conftest import REPO, tiny_job

JOBS = sorted((REPO / "jobs").glob("*.yaml"))


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.name)
@pytest.mark.parametrize("smoke", [False, True])
def test_shipped_jobs_validate(path, smoke):
    spec = load_job(path, smoke=smoke)
    assert spec.name
    if smoke:
        assert str(spec.job_dir()).endswith("-smoke")


def test_smoke_and_set_overrides_apply_in_order():
    spec = load_job(REPO / "jobs/quickstart.yaml", ["tuner.max_trials=5"], smoke=True)
    assert spec.tuner.max_trials == 5  # --set wins over smoke
    assert spec.tuner.epochs == 1  # from smoke
    assert spec.data.train_examples == 2048


def test_smoke_suffix_applies_after_set_unless_the_smoke_block_names_a_dir(tmp_path):
    quickstart = REPO / "jobs/quickstart.yaml"
    spec = load_job(quickstart, [f"output_dir={tmp_path / 'x'}"], smoke=True)
    assert spec.job_dir() == tmp_path / "x-smoke"  # never the real job's directory
    assert str(load_job(quickstart, ["output_dir="], smoke=True).job_dir()).endswith(
        "runs/quickstart-smoke"
    )
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(tiny_job(tmp_path, smoke={"output_dir": str(tmp_path / "s")})))
    assert load_job(path, smoke=True).job_dir() == tmp_path / "s"
    assert load_job(path, [f"output_dir={tmp_path / 'y'}"], smoke=True).job_dir() == tmp_path / "y"


def test_override_values_are_parsed_as_yaml():
    assert parse_override("tuner.time_budget_s=1.5") == ("tuner.time_budget_s", 1.5)
    assert parse_override("export.formats=[keras]") == ("export.formats", ["keras"])
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        parse_override("tuner.max_trials")


def _error(tmp_path: Path, **sections) -> str:
    with pytest.raises(UserError) as info:
        validate_job(tiny_job(tmp_path, **sections), source="job.yaml")
    message = str(info.value)
    assert "\n" not in message, message
    return message


def test_unknown_top_level_key_lists_allowed_keys(tmp_path):
    message = _error(tmp_path, tunner={"max_trials": 3})
    assert "unknown key 'tunner' in job" in message and "tuner" in message


def test_unknown_nested_key_names_its_section(tmp_path):
    message = _error(tmp_path, tuner={"max_trail": 3})
    assert "unknown key 'max_trail' in tuner" in message and "max_trials" in message


def test_unknown_data_key_names_pipeline_options(tmp_path):
    message = _error(tmp_path, data={"batchsize": 3})
    assert "unknown key 'batchsize' in data" in message and "batch_size" in message


def test_misspelled_search_space(tmp_path):
    message = _error(tmp_path, search_space={"name": "image_cn"})
    assert "search_space.name" in message and "'image_cn'" in message
    assert "did you mean 'image_cnn'" in message


def test_misspelled_dataset(tmp_path):
    message = _error(tmp_path, data={"dataset": "fashon_mnist"})
    assert "'fashon_mnist'" in message and "fashion_mnist" in message


def test_unknown_algorithm_lists_choices(tmp_path):
    message = _error(tmp_path, tuner={"algorithm": "bayes"})
    assert "tuner.algorithm" in message and "'bayes'" in message and "'hyperband'" in message


def test_wrong_type(tmp_path):
    message = _error(tmp_path, tuner={"max_trials": "three"})
    assert "tuner.max_trials" in message and "'three'" in message


def test_impossible_range(tmp_path):
    message = _error(tmp_path, data={"validation_split": 1.5})
    assert "data.validation_split" in message and "1.5" in message


def test_objective_must_be_a_metric(tmp_path):
    message = _error(tmp_path, tuner={"objective": {"name": "val_acc"}})
    assert "tuner.objective.name" in message and "val_accuracy" in message


def test_early_stopping_with_restarts_at_the_rungs_is_refused(tmp_path):
    """After each rung the restarted rate climbs back high, and the epochs there do not beat
    the rung's annealed score: early stopping would cut the trial short in its last stretch."""
    pruning = {"rule": "asha", "grace_epochs": 1, "reduction_factor": 2, "anneal_at_rungs": True}
    message = _error(
        tmp_path,
        tuner={"max_trials": 2, "epochs": 8, "pruning": pruning},
        training={"early_stopping": {"patience": 2}},
    )
    assert "training.early_stopping" in message and "anneal_at_rungs" in message
    assert "\n" not in message
    validate_job(tiny_job(tmp_path, tuner={"max_trials": 2, "epochs": 8, "pruning": pruning}))
    plain = {**pruning, "anneal_at_rungs": False}
    validate_job(
        tiny_job(
            tmp_path,
            tuner={"max_trials": 2, "epochs": 8, "pruning": plain},
            training={"early_stopping": {"patience": 2}},
        )
    )


def test_unknown_search_space_option(tmp_path):
    message = _error(tmp_path, search_space={"name": "image_cnn", "options": {"depth": 3}})
    assert "unknown key 'depth' in search_space.options; allowed keys: (none)" in message


def test_search_space_options_are_checked_by_their_schema(tmp_path):
    message = _error(tmp_path, search_space={"name": "transfer", "options": {"backbone": "R18"}})
    assert "search_space.options.backbone" in message and "'ResNet50'" in message
    text = {"pipeline": "text_classification", "dataset": "imdb_reviews"}
    message = _error(
        tmp_path, data=text, search_space={"name": "text_rnn", "options": {"max_rnn_layers": "3"}}
    )
    assert "search_space.options.max_rnn_layers" in message and "'3'" in message


@pytest.mark.parametrize("name", SEARCH_SPACES.names())
def test_search_space_declarations_match_their_classes(name):
    """`search_spaces/options.py` lets validation skip the TensorFlow import; it must agree
    with what the class itself says (update it with the constructor)."""
    info, cls = SEARCH_SPACES.info(name), SEARCH_SPACES.get(name)
    assert info.tasks == tuple(cls.tasks) and info.metrics == tuple(cls.metrics)
    params = dict(inspect.signature(cls.__init__).parameters)
    del params["self"], params["meta"]
    params = {n: p for n, p in params.items() if p.kind != p.VAR_KEYWORD}
    assert list(info.options.model_fields) == list(params)
    for option, field in info.options.model_fields.items():
        assert field.default == params[option].default, option
    if name == "transfer":
        from search_spaces.transfer import BACKBONES

        backbones = typing.get_args(info.options.model_fields["backbone"].annotation)
        assert set(backbones) == set(BACKBONES)


def test_missing_required_section(tmp_path):
    job = tiny_job(tmp_path)
    del job["search_space"]
    with pytest.raises(UserError, match="search_space: required key is missing"):
        validate_job(job)


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_job(bad)
    with pytest.raises(UserError, match="does not exist"):
        load_job(tmp_path / "nope.yaml")


def test_a_directory_a_key_given_twice_and_smoke_without_a_smoke_section(tmp_path):
    with pytest.raises(UserError, match="a directory, not a job file"):
        load_job(tmp_path)
    twice = tmp_path / "twice.yaml"
    # Plain YAML keeps the last `tuner:`, which would drop the first section's keys unseen.
    twice.write_text("name: x\ntuner: {max_trials: 2}\ndata: {}\ntuner: {epochs: 3}\n")
    with pytest.raises(UserError, match=r"line 4: .*the key 'tuner' appears twice"):
        load_job(twice)
    merged = tmp_path / "merged.yaml"  # a merge key's values may be overridden: no error
    merged.write_text("a: &base {x: 1}\nb: {<<: *base, x: 2}\n")
    assert read_yaml(merged)["b"] == {"x": 2}
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(tiny_job(tmp_path)))
    load_job(plain)
    with pytest.raises(UserError, match="--smoke: .*plain.yaml has no smoke: section"):
        load_job(plain, smoke=True)


@pytest.mark.parametrize(
    "override",
    ["tuner.max_trials=true", "data.batch_size=yes", "tuner.pruning.grace_epochs=on"],
)
def test_a_boolean_where_a_number_belongs_is_refused(tmp_path, override):
    """Pydantic would take `true` as 1 (YAML's yes/on too): a batch of 1, one trial."""
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(tiny_job(tmp_path)))
    key = override.split("=")[0].rsplit(".", 1)[1]
    with pytest.raises(UserError, match=f"{key}: true is a boolean, not a number") as refused:
        load_job(path, [override])
    # One line about the key, not the whole section it sits in (a probe's nitpick).
    assert str(refused.value).endswith("(YAML reads yes/no/on/off as true/false)")
    load_job(path, ["tuner.max_trials=3", "data.batch_size=16"])  # numbers still are


def test_binary_job_file(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_bytes(b"name: x\n\xff\xfe\x00")
    with pytest.raises(UserError, match=r"job.yaml: not a text \(UTF-8\) file: byte 0xff"):
        load_job(path)


@pytest.mark.parametrize(
    "sections, key, value",
    [
        ({"data": {"pipeline": [1, 2]}}, "data.pipeline", "[1, 2]"),
        ({"data": {"pipeline": {"name": "x"}}}, "data.pipeline", "{'name': 'x'}"),
        ({"search_space": {"name": [1]}}, "search_space.name", "[1]"),
    ],
)
def test_a_list_where_a_name_is_expected(tmp_path, sections, key, value):
    message = _error(tmp_path, **sections)
    assert message.startswith(f"job.yaml: {key}:") and value in message


def test_output_dir_that_cannot_be_created(tmp_path):
    message = _error(tmp_path, output_dir="/proc/x/job")
    assert "output_dir: cannot create /proc/x/job" in message
    (tmp_path / "file").write_text("")
    message = _error(tmp_path, output_dir=str(tmp_path / "file" / "job"))
    assert f"{tmp_path / 'file'} is a file" in message
    assert not list(tmp_path.glob(".harness-probe-*")), "the probe must not leave its folder"


def test_import_path_that_is_not_a_hypermodel(tmp_path):
    for name in ("json:JSONDecoder", "json:dumps"):
        message = _error(tmp_path, search_space={"name": name})
        assert f"search_space.name: {name!r} is not a hypermodel class" in message
    message = _error(tmp_path, search_space={"name": "..json:JSONDecoder"})
    assert "must look like 'package.module:Name'" in message
    # A bare keras_tuner.HyperModel lacks what the engine calls (training plan, serving).
    message = _error(tmp_path, search_space={"name": "tests.harness.test_space:Nested"})
    assert "is a keras_tuner.HyperModel but not a search_spaces.base.SearchSpace" in message


def test_misspelled_smoke_key_fails_plain_validation(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(tiny_job(tmp_path, smoke={"tuner.max_trails": 1})))
    with pytest.raises(UserError, match=r"job.yaml: smoke: unknown key 'max_trails' in tuner"):
        load_job(path)
    path.write_text(yaml.safe_dump(tiny_job(tmp_path, smoke={"tuner.max_trials": 1})))
    assert load_job(path).tuner.max_trials == 2  # the smoke block is checked, not applied


def test_user_hypermodel_by_import_path(tmp_path):
    spec = validate_job(
        tiny_job(tmp_path, search_space={"name": "tests.helpers.hypermodels:ExplodingCNN"})
    )
    assert spec.search_space.name.endswith("ExplodingCNN")
    message = _error(tmp_path, search_space={"name": "tests.helpers.hypermodels:Nope"})
    assert "has no attribute 'Nope'" in message


def test_resolved_spec_round_trips(tmp_path):
    spec = validate_job(tiny_job(tmp_path))
    again = validate_job(yaml.safe_load(yaml.safe_dump(spec.model_dump(mode="json"))))
    assert again == spec


def test_retrain_needs_a_pipeline_that_supports_it(tmp_path):
    job = tiny_job(
        tmp_path,
        search_space={"name": "forecaster"},
        tuner={"objective": {"name": "val_loss", "direction": "min"}},
        export={"retrain": True},
    )
    job["data"] = {"pipeline": "time_series", "path": str(tmp_path / "s.csv"), "targets": ["y"]}
    with pytest.raises(UserError) as info:
        validate_job(job, source="job.yaml")
    message = str(info.value)
    assert "export.retrain is not supported by data.pipeline 'time_series'" in message


@pytest.mark.parametrize(
    "data, space",
    [
        ({"pipeline": "text_classification", "dataset": "imdb_reviews"}, "text_rnn"),
        ({"pipeline": "char_lm", "files": ["a.txt"]}, "char_lm"),
        ({"pipeline": "seq2seq", "task": "addition"}, "seq2seq"),
    ],
    ids=["text", "char_lm", "seq2seq"],
)
def test_tflite_is_refused_for_models_that_take_raw_strings(tmp_path, data, space):
    """Their export failed after the whole search (TFLite's converter, 206 lines of MLIR)."""
    job = tiny_job(tmp_path, search_space={"name": space}, export={"formats": ["tflite"]})
    job["data"] = data
    job["tuner"]["objective"] = {"name": "val_loss", "direction": "min"}
    with pytest.raises(UserError) as info:
        validate_job(job, source="job.yaml")
    assert str(info.value) == (
        f"job.yaml: export.formats tflite is not supported by data.pipeline {data['pipeline']!r} "
        "(its models take raw strings, which TFLite cannot convert)"
    )


def test_output_dir_expands_the_home_directory(tmp_path, monkeypatch):
    """`~/runs/x` is the home's runs/x, not a folder named "~" (which `rm -rf ~` would hit)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    spec = validate_job(tiny_job(tmp_path, output_dir="~/runs/x"))
    assert spec.job_dir() == tmp_path / "runs" / "x"
