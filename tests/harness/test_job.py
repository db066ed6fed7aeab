"""Job files: every shipped job validates; every kind of mistake is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.errors import UserError
from harness.job import load_job, parse_override, validate_job
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


def test_unknown_search_space_option(tmp_path):
    message = _error(tmp_path, search_space={"name": "image_cnn", "options": {"depth": 3}})
    assert "search_space.options" in message and "'depth'" in message


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
    message = _error(
        tmp_path,
        data={"pipeline": "text_classification", "dataset": "imdb_reviews"},
        search_space={"name": "text_rnn"},
        export={"retrain": True},
    )
    assert "export.retrain is not supported by data.pipeline 'text_classification'" in message
