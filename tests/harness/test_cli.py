"""The command line as a user meets it: help, one-line errors, exit codes, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
import yaml

from harness import cli, quiet
from harness.cli import _report, outcome_code
from harness.errors import UserError
from tests.conftest import REPO, tiny_job

# How a user starts the command: the module, and the script pip installed next to python.
ENTRY_POINTS = {
    "python-m": [sys.executable, "-m", "harness"],
    "installed": [str(Path(sys.executable).with_name("harness"))],
}


def harness(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def run_clean(command: list[str], home: Path) -> subprocess.CompletedProcess:
    """`command` in a fresh user's environment: no TF_CPP_MIN_LOG_LEVEL, no PYTHONPATH."""
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
        timeout=300,
    )


def tf_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if quiet.is_tf_log(line.encode(), True)]


@pytest.fixture(params=sorted(ENTRY_POINTS))
def entry_point(request) -> list[str]:
    command = ENTRY_POINTS[request.param]
    if not Path(command[0]).exists():
        pytest.skip(f"{command[0]} is not installed")
    return command


COMMANDS = ("tune", "resume", "status", "plot", "export", "tensorboard", "predict", "validate")


def test_help_explains_each_command():
    from typer.testing import CliRunner

    from harness.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["--help"], terminal_width=200).output
    listed = {
        line.split()[1]
        for line in out.splitlines()
        if line.startswith("│ ") and len(line.split()) > 2
    }
    assert listed >= {*COMMANDS, "data"}, out
    for command in [[c] for c in COMMANDS] + [["data", "import"]]:
        result = runner.invoke(app, [*command, "--help"], terminal_width=200)
        assert result.exit_code == 0, (command, result.output, result.exception)
        assert "Usage:" in result.output


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["tune"], "error: Missing argument 'job_file'. (see 'harness tune --help')"),
        (
            ["tune", "--bogus", "x.yaml"],
            "error: No such option: --bogus (see 'harness tune --help')",
        ),
        (["bogus"], "error: No such command 'bogus'. (see 'harness --help')"),
    ],
)
def test_a_command_line_mistake_is_one_line_and_exit_2(argv, line, monkeypatch, capsys):
    """Not click's usage box of five lines: one `error:` line, like every other mistake."""
    from harness import cli

    monkeypatch.setattr(quiet, "install", lambda: None)
    monkeypatch.setattr(sys, "argv", ["harness", *argv])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [line]


def test_a_language_model_s_length_is_capped_in_one_line(monkeypatch, capsys):
    """`predict --length` past MAX_GENERATED: a usage error before any model loads."""
    from harness import cli

    monkeypatch.setattr(quiet, "install", lambda: None)
    monkeypatch.setattr(sys, "argv", ["harness", "predict", "export/m", "x", "--length", "100001"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: Invalid value for '--length': ") and "100000" in line


@pytest.mark.slow
def test_bad_job_file_is_one_line_and_exit_2(tmp_path):
    job = tiny_job(tmp_path, tuner={"algorithm": "bayes"})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(job))
    result = harness("tune", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "tuner.algorithm" in lines[0] and "'bayes'" in lines[0]


@pytest.mark.slow
def test_bad_override_is_reported(tmp_path):
    result = harness("validate", "jobs/quickstart.yaml", "--set", "tuner.max_trials=-1")
    assert result.returncode == 2 and "tuner.max_trials" in result.stderr


@pytest.mark.slow
def test_missing_offline_dataset_says_what_to_import(tmp_path):
    job = tiny_job(tmp_path)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    result = harness("tune", str(path), env={"HARNESS_DATA_DIR": str(tmp_path / "empty")})
    assert result.returncode == 2 and result.stderr.splitlines() == [result.stderr.strip()]
    assert "harness data import fashion_mnist" in result.stderr
    assert "fashion_mnist.npz" in result.stderr


def unreachable(host: str, port: int) -> None:
    raise OSError(f"no route to {host}")


def test_missing_offline_dataset_is_refused_before_ray_starts(tmp_path, monkeypatch):
    from harness.job import validate_job

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started for a job whose data is missing")

    monkeypatch.setattr("harness.ray_execution.executor_for", no_ray)
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "empty"))
    spec = validate_job(tiny_job(tmp_path))  # download: false
    with pytest.raises(UserError, match="harness data import fashion_mnist PATH/TO/"):
        cli._run(spec, None)
    # One that may be downloaded from a host this machine cannot reach: refused too.
    monkeypatch.setattr("pipelines.tfds_source.probe", unreachable)
    spec = validate_job(tiny_job(tmp_path, data={"download": True}))
    with pytest.raises(UserError, match="download failed .*harness data import fashion_mnist"):
        cli._run(spec, None)
    assert not (tmp_path / "empty").exists()
    # A dataset that may be downloaded from a reachable host, or one imported (any version),
    # goes on to Ray.
    monkeypatch.setattr("pipelines.tfds_source.probe", lambda host, port: None)
    version = tmp_path / "imported" / "fashion_mnist" / "3.0.1"
    version.mkdir(parents=True)
    (version / "dataset_info.json").write_text("{}")
    for data_dir, download in ((tmp_path / "empty", True), (tmp_path / "imported", False)):
        monkeypatch.setenv("HARNESS_DATA_DIR", str(data_dir))
        spec = validate_job(tiny_job(tmp_path, data={"download": download}))
        with pytest.raises(AssertionError, match="Ray was started"):
            cli._run(spec, None)


@pytest.mark.slow
@pytest.mark.parametrize("listening", [True, False], ids=["served", "bound"])
def test_tensorboard_on_a_port_in_use_is_one_line_naming_it(tmp_path, listening):
    """TensorBoard refuses a port something serves on; Werkzeug one only bound (and exits)."""
    import socket

    (tmp_path / "job" / "tensorboard").mkdir(parents=True)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        if listening:
            taken.listen()
        port = taken.getsockname()[1]
        result = harness("tensorboard", str(tmp_path / "job"), "--port", str(port))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"error: --port {port}: already in use on localhost; pick another port, or --port 0 "
        "for any free one"
    ]


@pytest.mark.slow
def test_data_import_of_missing_or_corrupt_file(tmp_path):
    result = harness(
        "data", "import", "fashion_mnist", str(tmp_path / "nope.npz"), "--data-dir", str(tmp_path)
    )
    assert result.returncode == 2 and "no such file" in result.stderr
    corrupt = tmp_path / "fashion_mnist.npz"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    result = harness("data", "import", "fashion_mnist", str(corrupt), "--data-dir", str(tmp_path))
    assert result.returncode == 2 and str(corrupt) in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_unknown_importer_lists_known(tmp_path):
    result = harness("data", "import", "fashion", str(tmp_path / "x.npz"))
    assert result.returncode == 2 and "fashion_mnist" in result.stderr


@pytest.mark.parametrize("command", ["validate", "tune"])
def test_a_directory_given_as_job_file_is_named_a_directory(tmp_path, command):
    from typer.testing import CliRunner

    (tmp_path / "job.json").write_text("{}")  # a job directory: the error says what to run
    result = CliRunner().invoke(cli.app, [command, str(tmp_path)])
    assert isinstance(result.exception, UserError), result.output
    assert str(result.exception) == (
        f"{tmp_path}: a directory, not a job file (YAML); it is a job directory: harness "
        "resume continues it"
    )


@pytest.mark.slow
def test_bad_job_in_a_clean_environment_is_one_line(tmp_path, entry_point):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tiny_job(tmp_path, tuner={"algorithm": "bayes"})))
    result = run_clean([*entry_point, "tune", str(path)], tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("error: ") and "tuner.algorithm" in result.stderr


@pytest.mark.slow
def test_validate_in_a_clean_environment_prints_no_tensorflow_lines(tmp_path, entry_point):
    result = run_clean([*entry_point, "validate", "jobs/quickstart.yaml"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "is a valid job" in result.stdout


VALIDATE_IN_PROCESS = """
import sys
from harness.cli import app
for args in {runs!r}:
    app(["validate", "--no-space", *args], standalone_mode=False)
print("heavy modules:", [m for m in ("tensorflow", "keras") if m in sys.modules])
"""
SHIPPED_JOBS = sorted(str(p.relative_to(REPO)) for p in (REPO / "jobs").glob("*.yaml"))


@pytest.mark.slow
def test_validate_does_not_import_tensorflow(tmp_path):
    # Importing TensorFlow costs seconds and prints its C++ start-up lines; validation of the
    # schemas (all of it but the space check of pinned values) must not, so a module-level TF
    # import anywhere on its path shows up here. Every shipped job, full and smoke, in one
    # fresh process.
    runs = [[job, *smoke] for job in SHIPPED_JOBS for smoke in ([], ["--smoke"])]
    result = run_clean([sys.executable, "-c", VALIDATE_IN_PROCESS.format(runs=runs)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("is a valid job") == len(runs) == 2 * len(SHIPPED_JOBS) > 2
    assert "heavy modules: []" in result.stdout, result.stdout


@pytest.mark.slow
def test_data_import_of_missing_file_in_a_clean_environment_is_one_line(tmp_path, entry_point):
    missing = tmp_path / "nope.npz"
    command = [*entry_point, "data", "import", "fashion_mnist", str(missing)]
    result = run_clean([*command, "--data-dir", str(tmp_path / "data")], tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {missing}: no such file (expected a copy of fashion_mnist.npz)"
    ]


@pytest.mark.slow
def test_filter_drops_tensorflow_lines_and_keeps_tracebacks(tmp_path):
    code = textwrap.dedent("""
        from harness import quiet
        quiet.install()
        import tensorflow as tf
        tf.constant(1.0) + 1  # the first op logs cpu_feature_guard's lines
        raise ValueError("a real bug")
    """)
    result = run_clean([sys.executable, "-c", code], tmp_path)
    assert result.returncode == 1
    assert tf_lines(result.stderr) == []
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith("ValueError: a real bug")


@pytest.mark.slow
def test_filter_forwards_last_words_before_a_crash(tmp_path):
    code = textwrap.dedent("""
        import os, sys
        from harness import quiet
        quiet.install()
        os.write(2, b"I0000 00:00:1795528428.192052    5824 port.cc:153] oneDNN custom ops\\n")
        os.write(2, b"F0000 00:00:17.2  5824 op.cc:1] Check failed: kept, an abort follows\\n")
        sys.stderr.write("last words, no newline")
        sys.stderr.flush()
        os.abort()
    """)
    result = run_clean([sys.executable, "-c", code], tmp_path)
    assert result.returncode == -6  # SIGABRT: no atexit handler ran
    assert result.stderr == (
        "F0000 00:00:17.2  5824 op.cc:1] Check failed: kept, an abort follows\n"
        "last words, no newline"
    )


@pytest.mark.slow
def test_filter_keeps_an_unfinished_last_line(tmp_path):
    code = "from harness import quiet; quiet.install(); import sys; sys.stderr.write('no newline')"
    result = run_clean([sys.executable, "-c", code], tmp_path)
    assert result.returncode == 0 and result.stderr == "no newline"


@pytest.mark.parametrize(
    "line, dropped",
    [
        (
            "WARNING: All log messages before absl::InitializeLog() is called are written to ...",
            True,
        ),
        (
            "I0000 00:00:1795528428.192052    5824 port.cc:153] oneDNN custom operations are on.",
            True,
        ),
        ("W0114 10:31:02.123456   12 cuda_dnn.cc:8310] Unable to register cuDNN factory", True),
        (
            "(RayTrialActor pid=4242, ip=10.0.0.2) E0000 00:00:17.2  12 cuda_fft.cc:477] Unable",
            True,
        ),
        ("\x1b[36m(pid=4242)\x1b[0m I0000 00:00:17.2  12 port.cc:153] oneDNN", True),
        ("F0000 00:00:1795528428.2  5824 op.cc:1] Check failed", False),
        ("error: jobs/x.yaml: tuner.algorithm: ...", False),
        ("I0 looks like a header but is not", False),
        ("To enable the following instructions: AVX2 FMA", False),  # only right after a TF line
    ],
)
def test_tf_log_lines_are_recognised(line, dropped):
    assert quiet.is_tf_log(line.encode()) == dropped


def test_cpu_feature_guard_continuation_is_dropped_after_its_header():
    assert quiet.is_tf_log(b"To enable the following instructions: AVX2 FMA", after_dropped=True)


def _outcome(completed=1, failed=0, interrupted=False, exported=("m",), pruned=0, stop_reason=None):
    """Stands for harness.tuning.JobOutcome (its fields), without importing TensorFlow."""
    exported = [{"model_name": m, "test_metrics": {"accuracy": 0.9}} for m in exported]
    best = ("0001", 0.9) if completed or pruned else None
    return SimpleNamespace(
        completed=completed,
        pruned=pruned,
        failed=failed,
        interrupted=interrupted,
        stop_reason=stop_reason,
        exported=exported,
        best=best,
    )


@pytest.mark.parametrize(
    "outcome, export_requested, code",
    [
        (_outcome(), True, 0),
        (_outcome(exported=()), False, 0),  # export policy none
        (_outcome(completed=2, failed=1, stop_reason=None), True, 0),
        (_outcome(completed=0, failed=3, exported=()), True, 3),
        (_outcome(completed=0, pruned=2), True, 0),  # pruned trials have scores: exportable
        (_outcome(completed=0, failed=0, exported=()), False, 3),
        (_outcome(completed=2, failed=3, stop_reason="3 consecutive trials failed"), True, 3),
        (_outcome(exported=()), True, 3),  # export asked for, none made
        (_outcome(interrupted=True, exported=()), True, 130),
        (_outcome(completed=0, interrupted=True, stop_reason="x", exported=()), True, 130),
    ],
)
def test_exit_code_of_a_finished_job(outcome, export_requested, code):
    assert outcome_code(outcome, export_requested)[0] == code


def test_report_prints_one_summary_line_and_exits_with_the_code(capsys):
    with pytest.raises(typer.Exit) as info:
        _report(_outcome(completed=1, failed=3, stop_reason="3 consecutive trials failed"), True)
    assert info.value.exit_code == 3
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == (
        "search stopped (3 consecutive trials failed): trials 1 completed, 0 pruned, 3 failed; "
        "best trial 0001 with objective 0.9000"
    )
    _report(_outcome(), True)  # exit 0: returns
    assert capsys.readouterr().out.splitlines()[-1].startswith("done: trials 1 completed")


def _series_job(tmp_path: Path, **sections) -> dict:
    """A time-series job: validating it imports no TensorFlow, so each case runs in a second."""
    job = {
        "name": "series",
        "output_dir": str(tmp_path / "job"),
        "data": {"pipeline": "time_series", "path": str(tmp_path / "s.csv"), "targets": ["t"]},
        "search_space": {"name": "forecaster"},
        "tuner": {"objective": {"name": "val_loss", "direction": "min"}},
    }
    return {**job, **sections}


BAD_JOBS = {
    "binary file": (None, "not a text (UTF-8) file"),
    "list as pipeline": ({"data": {"pipeline": [1, 2]}}, "data.pipeline: expected a pipeline"),
    "list as space": ({"search_space": {"name": [1]}}, "search_space.name"),
    "output_dir in /proc": ({"output_dir": "/proc/x"}, "output_dir: cannot create /proc/x"),
    "not a hypermodel": (
        {"search_space": {"name": "json:JSONDecoder"}},
        "'json:JSONDecoder' is not a hypermodel class",
    ),
    "smoke key misspelled": (
        {"smoke": {"tuner.max_trails": 1}},
        "smoke: unknown key 'max_trails' in tuner",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD_JOBS))
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, case):
    sections, expected = BAD_JOBS[case]
    path = tmp_path / "job.yaml"
    if sections is None:
        path.write_bytes(bytes(range(128, 256)))
    else:
        path.write_text(yaml.safe_dump(_series_job(tmp_path, **sections)))
    result = harness("validate", str(path))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"error: {path}") and expected in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "space, expected",
    [
        ({"fixed": {"conv_layers": 9}}, "search_space.fixed.conv_layers: 9 is outside the space"),
        ({"choices": {"vgg_filters": [32, 33]}}, "choices.vgg_filters: 33 is outside the space"),
        ({"choices": {"nope": [1, 2]}}, "search_space.choices: 'nope' is not a hyperparameter"),
    ],
    ids=["fixed", "choices", "unknown"],
)
def test_validate_checks_pinned_values_against_the_space(tmp_path, data_dir, space, expected):
    """In this process (a `harness` process per case would import TensorFlow three times): the
    UserError that `main` prints as one line with exit 2, as the subprocess tests here show."""
    from typer.testing import CliRunner

    path = tmp_path / "job.yaml"
    job = tiny_job(tmp_path, search_space={"name": "image_cnn", **space})
    path.write_text(yaml.safe_dump(job))
    result = CliRunner().invoke(cli.app, ["validate", str(path)])
    assert isinstance(result.exception, UserError), result.output
    message = str(result.exception)
    assert message.splitlines() == [message]
    assert message.startswith(f"{path}: ") and expected in message
    assert result.output == ""  # not the resolved job first, then the refusal


def test_validate_notes_data_that_is_not_here_and_passes(tmp_path):
    """A job may be validated on a machine without its data (meant for a cluster that has
    it): a note says what is missing, from a look at the files (no TensorFlow), and exit 0."""
    from typer.testing import CliRunner

    missing = tmp_path / "nope.npz"
    cases = {
        "arrays": ({"pipeline": "image_classification", "arrays": str(missing)}, {"fixed": {}}),
        "pinned": (
            {"pipeline": "image_classification", "arrays": str(missing)},
            {"fixed": {"conv_layers": 9}},  # outside, but not checkable without the data
        ),
        "tfds": ({"data_dir": str(tmp_path / "empty")}, {"fixed": {}}),
    }
    for case, (data, space) in cases.items():
        job = tiny_job(tmp_path, data=data, search_space={"name": "image_cnn", **space})
        if case != "tfds":
            job["data"] = data
        path = tmp_path / f"{case}.yaml"
        path.write_text(yaml.safe_dump(job))
        result = CliRunner().invoke(cli.app, ["validate", str(path)], terminal_width=400)
        assert result.exit_code == 0, (case, result.output)
        notes = [line for line in result.output.splitlines() if line.startswith("note: ")]
        if case == "tfds":
            assert notes == [
                f"note: dataset 'fashion_mnist' is not prepared in the data directory "
                f"{tmp_path / 'empty'}; import a local copy with: harness data import "
                f"fashion_mnist PATH/TO/fashion_mnist.npz --data-dir {tmp_path / 'empty'}; "
                "tune refuses it here"
            ], case
            continue
        first = f"note: data: {missing}: no such file or folder; tune refuses it here"
        assert notes[0] == first, (case, notes)
        if case == "pinned":
            assert notes[1:] == [
                "note: search_space.fixed/choices not checked against the space: no data here"
            ]
        else:
            assert notes[1:] == []
        assert "is a valid job" in " ".join(result.output.split())


def test_job_directory_commands_on_a_file_nothing_or_a_damaged_record_are_one_line(tmp_path):
    """A job file given where its directory belongs, a path that is not there, a record
    edited by hand: one line naming it (were NotADirectoryError's / JSONDecodeError's
    tracebacks, or "no trials yet" for a directory that does not exist)."""
    from typer.testing import CliRunner

    job_file, nothing, damaged = tmp_path / "job.yaml", tmp_path / "nope", tmp_path / "job"
    job_file.write_text("name: x\n")
    damaged.mkdir()
    (damaged / "format.json").write_text('{"version": ')
    expected = {
        job_file: f"{job_file} is a file, not a job directory",
        nothing: f"{nothing}: no such job directory",
        damaged: f"{damaged / 'format.json'}: damaged, not JSON (Expecting value: line 1 "
        "column 13)",
    }
    for path, message in expected.items():
        for command in ("status", "plot", "export", "resume"):
            result = CliRunner().invoke(cli.app, [command, str(path)])
            assert isinstance(result.exception, UserError), (command, result.output)
            assert str(result.exception) == message, command
    (damaged / "format.json").write_bytes(b"\xff\xfe{")
    from harness.jobdir import read_json

    with pytest.raises(UserError, match=r"format.json: damaged, not JSON \(not UTF-8 text\)$"):
        read_json(damaged / "format.json")


def test_export_without_the_data_says_what_tune_says_and_sigterm_is_an_interrupt(tmp_path):
    """`harness export` on a machine without the job's TFDS copy named the wrong cause ("needs
    train and test splits"); SIGTERM mid-export exited 143 and left driver.pid behind."""
    import signal

    from typer.testing import CliRunner

    from harness.errors import sigterm_as_interrupt
    from harness.job import validate_job
    from harness.jobdir import JobDir
    from harness.tuning import _prepare_job_dir, _write_spec

    spec = validate_job(tiny_job(tmp_path, data={"data_dir": str(tmp_path / "empty")}))
    job_dir = JobDir(spec.job_dir())
    job_dir.root.mkdir(parents=True)
    _prepare_job_dir(job_dir, spec, overwrite=False)
    _write_spec(job_dir, spec)
    result = CliRunner().invoke(cli.app, ["export", str(job_dir.root)])
    assert isinstance(result.exception, UserError), result.output
    assert str(result.exception).startswith(
        f"dataset 'fashion_mnist' is not prepared in the data directory {tmp_path / 'empty'}; "
        "import a local copy with: harness data import fashion_mnist"
    )
    before = signal.getsignal(signal.SIGTERM)
    try:
        sigterm_as_interrupt()
        with pytest.raises(KeyboardInterrupt, match="signal 15"):
            signal.raise_signal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, before)


@pytest.mark.slow
def test_tune_refusing_a_pinned_value_while_ray_starts_is_one_line(tmp_path, data_dir):
    """`harness tune` starts Ray and its workers before it checks the space (they import
    TensorFlow meanwhile): a job refused then still gets one line and exit 2, and no trial."""
    path = tmp_path / "job.yaml"
    job = tiny_job(tmp_path, search_space={"name": "image_cnn", "fixed": {"conv_layers": 9}})
    path.write_text(yaml.safe_dump(job))
    result = harness("tune", str(path), env={"HARNESS_DATA_DIR": str(data_dir)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert "search_space.fixed.conv_layers: 9 is outside the space" in result.stderr
    assert not (Path(job["output_dir"]) / "trials").exists()


@pytest.mark.slow
def test_tune_on_a_cluster_address_nothing_answers_is_one_line(tmp_path, data_dir):
    """Ray itself would retry for minutes, printing its own log lines."""
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(tiny_job(tmp_path)))
    started = time.monotonic()
    result = harness(
        "tune", str(path), "--address", f"127.0.0.1:{port}", env={"HARNESS_DATA_DIR": str(data_dir)}
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith(f"error: cannot reach Ray at 127.0.0.1:{port}: ")
    assert time.monotonic() - started < 60


@pytest.mark.slow
def test_installed_command_imports_a_search_space_from_the_current_directory(tmp_path):
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(
        "from search_spaces.image_cnn import ImageCNN\n\n\nclass Mine(ImageCNN):\n    pass\n"
    )
    job = tiny_job(tmp_path, search_space={"name": "mypkg.models:Mine"})
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    installed = Path(sys.executable).parent / "harness"
    result = subprocess.run(
        [str(installed), "validate", "job.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "is a valid job" in result.stdout


@pytest.mark.slow
def test_export_is_refused_while_the_job_directory_is_in_use(tmp_path):
    from harness.jobdir import JobDir

    job_dir = JobDir(tmp_path / "job")
    with job_dir.lock():
        result = harness("export", str(job_dir.root))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "in use by another harness driver" in result.stderr


def test_full_disk_is_one_line_naming_the_path(tmp_path, monkeypatch, capsys):
    import errno

    from harness import cli
    from harness.jobdir import atomic_write_json

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    target = tmp_path / "job" / "run.json"
    with pytest.raises(OSError) as raised:
        atomic_write_json(target, {"a": 1})
    assert raised.value.filename == str(target)
    assert not list(target.parent.iterdir())  # no temporary file left behind

    monkeypatch.setattr(cli, "app", lambda **_: atomic_write_json(target, {"a": 1}))
    monkeypatch.setattr(quiet, "install", lambda: None)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: no space left on the device: {target}; free some and run the command again"
    ]
    tf_style = RuntimeError("/job/trials/3/ckpt.tmp; No space left on device [Op:SaveV2]")
    assert "(/job/trials/3/ckpt.tmp; No space" in cli.disk_full_line(tf_style)
    assert cli.disk_full_line(ValueError("something else")) is None


def test_a_job_directory_this_user_cannot_write(tmp_path, monkeypatch):
    """A probe's read-only copy of a job (another user's results, a read-only mount): `status`
    died in a traceback opening the lock for writing; a run or export must say it in a line."""
    import filelock

    from harness.errors import UserError
    from harness.jobdir import JobDir, _locked_elsewhere

    job_dir = JobDir(tmp_path / "job")
    with job_dir.lock():
        pass
    lock_path = job_dir.root / "driver.lock"
    holder = filelock.FileLock(str(lock_path))  # a driver elsewhere, probed read-only
    holder.acquire(timeout=0)
    try:
        assert _locked_elsewhere(lock_path)
    finally:
        holder.release()
    assert not _locked_elsewhere(lock_path)
    assert not _locked_elsewhere(tmp_path / "no_such.lock")

    def read_only(self, *args, **kwargs):
        raise PermissionError(1, "Operation not permitted", str(lock_path))

    monkeypatch.setattr(filelock.FileLock, "acquire", read_only)
    assert job_dir.driver_alive() is False
    with pytest.raises(UserError, match=r"job directory .* is not writable \(Operation not"):
        with job_dir.lock():
            pass
