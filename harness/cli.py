"""The `harness` command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from harness import quiet, tf_env
from harness.errors import UserError, says_disk_full, sigterm_as_interrupt

# Exit codes a script can trust (README, "Exit codes"); 1 is left to Python: a bug, with its
# traceback.
EXIT_USER_ERROR = 2
EXIT_NO_RESULT = 3
EXIT_INTERRUPTED = 130
# `predict --length`: a language model writes one character per step (a long wait, not a hang).
MAX_GENERATED = 100_000

app = typer.Typer(
    help="Tune TensorFlow/Keras models: Keras Tuner search spaces, trials on Ray workers, "
    "TensorBoard logs and exported best models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Manage datasets for offline use.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()

SetOption = Annotated[
    Optional[list[str]],  # noqa: UP045 (typer needs Optional on 3.10)
    typer.Option("--set", "-s", help="Override one job key, e.g. --set tuner.max_trials=3."),
]
AddressOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)."),
]


@app.command()
def tune(
    job_file: Annotated[Path, typer.Argument(help="Job file (YAML), e.g. jobs/quickstart.yaml.")],
    set_: SetOption = None,
    smoke: Annotated[bool, typer.Option(help="Apply the job's `smoke:` overrides.")] = False,
    address: AddressOption = None,
    overwrite: Annotated[bool, typer.Option(help="Delete the job directory first.")] = False,
) -> None:
    """Run a tuning job (or continue it if its job directory already has progress)."""
    from harness.job_file import load_job

    _require_tensorflow()
    spec = load_job(job_file, set_ or [], smoke=smoke)
    _report(_run(spec, address, overwrite=overwrite), _export_requested(spec))


@app.command()
def resume(
    job_dir: Annotated[Path, typer.Argument(help="A job directory (output_dir of a job).")],
    address: AddressOption = None,
) -> None:
    """Continue a stopped job: finished trials are kept, the trial in flight runs again."""
    from harness.job import resume_spec
    from harness.jobdir import JobDir

    _require_tensorflow()
    spec = resume_spec(JobDir(job_dir))
    spec.output_dir = str(job_dir)
    _report(_run(spec, address), _export_requested(spec))


def _run(spec, address: str | None, overwrite: bool = False):
    """Runs a job. Ray and its warm workers start first, in the background, so that they
    import TensorFlow while this process does (harness.tuning imports it) and checks the job."""
    from harness.ray_execution import executor_for

    _refuse_missing_offline_data(spec)
    executor = executor_for(spec, address).start()
    try:
        executor.let_ray_start_first()
        from harness.lean_imports import import_keras_without_extras

        # The driver uses scikit-learn only for the Bayesian oracle (and later for the
        # confusion matrix at export, which imports it then).
        import_keras_without_extras(keep=("sklearn",) if spec.tuner.algorithm == "bayesian" else ())
        from harness.tuning import tune

        return tune(spec, console, address=address, overwrite=overwrite, executor=executor)
    finally:
        executor.close()


def _unprepared_dataset(spec):
    """(name, data dir) of the job's TFDS dataset when it was surely never prepared there (a
    look at the files, without importing TFDS), else None."""
    name = getattr(spec.data, "dataset", None)
    if not name:
        return None
    from pipelines import tfds_source

    data_dir = tfds_source.resolve_data_dir(getattr(spec.data, "data_dir", None))
    return (name, data_dir) if tfds_source.surely_missing(name, data_dir) else None


def _refuse_missing_offline_data(spec) -> None:
    """A TFDS dataset that was never imported and that the job may not download, or cannot
    (its download host is unreachable): refused before Ray starts, in the second it takes to
    look, instead of after Ray's start and stop (about 20 s on 2 slow cores). Anything subtler
    is left to the pipeline's own check."""
    unprepared = _unprepared_dataset(spec)
    if not unprepared:
        return
    from pipelines import tfds_source

    if not getattr(spec.data, "download", True):
        raise UserError(tfds_source.missing_message(*unprepared))
    tfds_source.refuse_unreachable_download(tfds_source.builder(*unprepared), *unprepared)


def _absent_data(spec) -> str | None:
    """Why the job's data is surely not on this machine: a file or folder it names is not
    there, or a TFDS dataset it may not download was never prepared (a look at the files, no
    read, no network). None when it may be there: the pipeline's own check says the rest."""
    missing = spec.data.missing_sources()
    if missing:
        return f"data: {missing[0]}: no such file or folder"
    unprepared = _unprepared_dataset(spec)
    if unprepared and not getattr(spec.data, "download", True):
        from pipelines import tfds_source

        return tfds_source.missing_message(*unprepared)
    return None


@app.command()
def validate(
    job_file: Annotated[Path, typer.Argument(help="Job file (YAML).")],
    set_: SetOption = None,
    smoke: Annotated[bool, typer.Option(help="Apply the job's `smoke:` overrides.")] = False,
    space: Annotated[
        bool,
        typer.Option(
            help="Check search_space.fixed/choices against the space (builds the model: "
            "imports TensorFlow, needs the data's metadata)."
        ),
    ] = True,
) -> None:
    """Check a job file (and its smoke variant) without running it; print the resolved job."""
    import yaml

    from harness.job_file import load_job

    spec = load_job(job_file, set_ or [], smoke=smoke)
    skipped = None
    absent = _absent_data(spec)
    if absent and (spec.search_space.fixed or spec.search_space.choices):
        skipped = "search_space.fixed/choices not checked against the space: no data here"
    elif space and (spec.search_space.fixed or spec.search_space.choices):
        from harness.space import check_job_space

        try:  # before the resolved job is printed: a refusal is its one line alone
            skipped = check_job_space(spec)
        except UserError as e:
            raise UserError(f"{job_file}: {e}") from None
    console.print(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    if absent:  # the job may be meant for a machine that has its data: a note, not a refusal
        console.print(f"[yellow]note[/]: {absent}; tune refuses it here", soft_wrap=True)
    if skipped:
        console.print(f"[yellow]note[/]: {skipped}", soft_wrap=True)
    console.print(f"[green]ok[/]: {job_file} is a valid job (job dir {spec.job_dir()})")


@app.command()
def status(
    job_dir: Annotated[Path, typer.Argument(help="A job directory.")],
    format_: Annotated[
        str,
        typer.Option(
            "--format",
            help="table (for people), csv or json (one row per trial, every hyperparameter).",
        ),
    ] = "table",
) -> None:
    """Show the trials: status and why, objective at the best epoch, hyperparameters, exports."""
    import json

    from harness.jobdir import JobDir
    from harness.status import best_per_family, rows_as_csv, summary, trial_rows, trials_table

    if format_ not in ("table", "csv", "json"):
        raise UserError(f"--format: {format_!r} is not one of table, csv, json")
    jd = JobDir(job_dir)
    jd.check_existing()
    rows = trial_rows(jd)
    if format_ == "csv":
        sys.stdout.write(rows_as_csv(rows))
        return
    if format_ == "json":
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return
    console.print(trials_table(jd, rows, width=console.width))
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(summary(jd).items()))
    console.print(counts or "no trials yet")
    families = best_per_family(jd)
    if len(families) > 1:
        shown = ", ".join(f"{f} {score:.4f} (trial {t})" for f, (t, score) in families.items())
        console.print(f"best per family: {shown}", soft_wrap=True)


@app.command()
def plot(
    job_dir: Annotated[Path, typer.Argument(help="A job directory.")],
    out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(help="Where to write the PNG (default: JOB_DIR/search.png)."),
    ] = None,
) -> None:
    """Draw the search: best objective so far against time, and each trial's curve (PNG)."""
    from harness.jobdir import JobDir
    from harness.plots import plot_search

    jd = JobDir(job_dir)
    jd.read_spec()  # a clear error when this is not a job directory (checks it exists first)
    console.print(f"wrote {plot_search(jd, out)}", highlight=False, soft_wrap=True)


@app.command()
def export(
    job_dir: Annotated[Path, typer.Argument(help="A job directory.")],
    top: Annotated[int, typer.Option(min=1, help="Export the K best trials.")] = 1,
) -> None:
    """Export the best trial(s): SavedModel, .keras file and manifest with test metrics."""
    from harness.export import export_trials
    from harness.jobdir import JobDir

    _require_tensorflow()
    jd = JobDir(job_dir)
    jd.check_existing()
    sigterm_as_interrupt()  # a scheduler's stop mid-refit: exit 130, the lock released
    with jd.lock():  # one writer at a time: a running job or another export is refused
        check_data_unchanged(jd)
        export_trials(jd, top, console)


def check_data_unchanged(job_dir) -> None:
    """The test split scored (and a refit trained on) must be the data the trials were
    selected on: a user's files edited since the job started are refused, as by a resume, and
    a TFDS copy not prepared here is named as `tune` names it."""
    from harness.job import resume_spec
    from harness.tuning import check_same_data
    from pipelines import PIPELINES

    spec = resume_spec(job_dir)
    _refuse_missing_offline_data(spec)
    meta = PIPELINES.get(spec.data.pipeline)(spec.data).describe()
    check_same_data(job_dir, spec, meta, console)


@app.command()
def tensorboard(
    job_dir: Annotated[Path, typer.Argument(help="A job directory.")],
    port: Annotated[int, typer.Option(help="Port to serve on (0 = any free port).")] = 6006,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "localhost",
) -> None:
    """Start TensorBoard on a job (per-trial curves, HParams dashboard); prints the URL."""
    from tensorboard import program

    from harness.jobdir import JobDir

    logdir = JobDir(job_dir).tensorboard_dir
    if not logdir.is_dir():
        raise UserError(f"{job_dir}: no tensorboard/ folder (is it a job directory?)")
    board = program.TensorBoard()
    board.configure(argv=[None, "--logdir", str(logdir), "--port", str(port), "--host", host])
    url = _launch_tensorboard(board, port, host)
    console.print(
        f"TensorBoard for {job_dir}: [bold]{url}[/] (HParams tab: {url}#hparams); Ctrl-C to stop",
        soft_wrap=True,
    )
    try:
        import threading

        threading.Event().wait()
    except KeyboardInterrupt:
        pass


def _launch_tensorboard(board, port: int, host: str) -> str:
    """Starts the server; a port in use or an address it cannot bind is one error line.
    TensorBoard writes its data-loader advisory to stderr before it binds: kept back until the
    server is up, so that a refusal prints nothing else."""
    import contextlib
    import io

    from tensorboard import program

    in_use = UserError(
        f"--port {port}: already in use on {host}; pick another port, or --port 0 for any free one"
    )
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            url = board.launch()
    except program.TensorBoardPortInUseError:
        raise in_use from None
    except program.TensorBoardServerException as e:
        raise UserError(f"--host {host} --port {port}: {e.msg}") from None
    except SystemExit:
        # Werkzeug's bind failures (a port bound but not listening, an address not on this
        # machine) print the OS's reason, then a hint when the port is in use, and exit 1.
        if "in use" in said.getvalue():
            raise in_use from None
        reason = (said.getvalue().strip().splitlines() or ["TensorBoard exited"])[-1]
        raise UserError(f"--host {host} --port {port}: cannot serve there ({reason})") from None
    sys.stderr.write(said.getvalue())
    return url


@app.command()
def predict(
    export_dir: Annotated[
        Path,
        typer.Argument(
            help="An export folder: export/MODEL (its latest version) or export/MODEL/VERSION."
        ),
    ],
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Image files, text lines, .txt files, (sequence classifiers) .npy/.csv "
            "files, (forecasters) CSV files or (language models) prompts."
        ),
    ],
    length: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            min=1, max=MAX_GENERATED, help="Language models: characters to write [default: 200]."
        ),
    ] = None,
    temperature: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(min=0.01, help="Language models: sampling temperature [default: 0.8]."),
    ] = None,
    top: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(min=1, help="Classifiers: show the K likeliest classes [default: 1]."),
    ] = None,
) -> None:
    """Run an exported model on raw inputs: image files, review text, (sequence classifiers)
    .npy/.csv files of sequences, (forecasters) CSV files of recent rows, or (language models)
    prompts to continue."""
    from harness.predict import predict as run

    _require_tensorflow()
    for row in run(export_dir, inputs, length, temperature, top):
        if "decoded" in row:
            console.print(
                f"{row['input']} -> {row['decoded']}", soft_wrap=True, highlight=False, markup=False
            )
            continue
        if "generated" in row:
            console.print(
                f"{row['input']}{row['generated']}", soft_wrap=True, highlight=False, markup=False
            )
            continue
        if "forecast" in row:
            shown = "; ".join(
                f"{target} " + ", ".join(f"{v:.4g}" for v in values)
                for target, values in row["forecast"].items()
            )
            console.print(f"{row['input']}: next {shown}", soft_wrap=True, highlight=False)
            continue
        ranked = ", ".join(f"{r['class']} ({r['probability']:.3f})" for r in row["top"])
        console.print(f"{row['input']}: {ranked}", soft_wrap=True, highlight=False, markup=False)


@data_app.command("import")
def data_import(
    name: Annotated[str, typer.Argument(help="Dataset name, e.g. fashion_mnist.")],
    path: Annotated[Path, typer.Argument(help="Local copy, e.g. fashion_mnist.npz.")],
    data_dir: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="Data directory (default: HARNESS_DATA_DIR, TFDS_DATA_DIR, ~/tensorflow_datasets)."
        ),
    ] = None,
) -> None:
    """Import a local copy of a dataset so jobs load it by name without internet."""
    from pipelines import IMPORTERS
    from pipelines.offline import import_dataset
    from pipelines.tfds_source import resolve_data_dir

    _require_tensorflow()
    importer = IMPORTERS.get(name)
    target = resolve_data_dir(data_dir)
    with console.status(f"importing {name} from {path} into {target} ..."):
        counts = import_dataset(importer, path, target)
    shown = ", ".join(f"{split}: {n}" for split, n in counts.items())
    console.print(f"[green]imported[/] {name} ({shown}) into {target}")


def _require_tensorflow() -> None:
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        raise UserError(
            "TensorFlow is not installed: pip install -e '.[cpu]' (or '.[gpu]' for the CUDA build)"
        )


def _export_requested(spec) -> bool:
    return spec.export.policy != "none"


def _report(outcome, export_requested: bool) -> None:
    """Prints the exported models and one summary line; exits non-zero unless the job gave
    what was asked (see `outcome_code`)."""
    for manifest in outcome.exported:
        acc = manifest["test_metrics"].get("accuracy")
        if acc is not None:
            console.print(f"[bold green]test accuracy[/] {acc:.4f} ({manifest['model_name']})")
    code, verdict = outcome_code(outcome, export_requested)
    best = outcome.best
    console.print(
        f"{verdict}: trials {outcome.completed} completed, {outcome.pruned} pruned, "
        f"{outcome.failed} failed"
        + (f"; best trial {best[0]} with objective {best[1]:.4f}" if best else ""),
        soft_wrap=True,
    )
    if code:
        raise typer.Exit(code)


def outcome_code(outcome, export_requested: bool) -> tuple[int, str]:
    """The exit code of a finished `tune`/`resume` and the verdict that starts its summary.

    0 only when at least one trial has a score (completed, or pruned after a validation), the
    search was not cut short by failures and the requested export exists: a scheduler can chain
    the next step on it.
    """
    if outcome.interrupted:
        return EXIT_INTERRUPTED, "[yellow]interrupted[/]"
    if outcome.stop_reason:
        return EXIT_NO_RESULT, f"[red]search stopped[/] ({outcome.stop_reason})"
    if not outcome.completed + outcome.pruned:  # a pruned trial has a score too
        return EXIT_NO_RESULT, "[red]no trial completed[/]"
    if export_requested and not outcome.exported:
        return EXIT_NO_RESULT, "[red]nothing exported[/]"
    return 0, "[green]done[/]"


def main() -> None:
    """Entry point: user mistakes print one line and exit 2, with no traceback."""
    quiet.install()  # before anything imports TensorFlow
    tf_env.apply()  # before TensorFlow runs an op (the refit and export run here)
    # A job may name its own `package.module:Class` from the directory harness runs in; the
    # installed console script (unlike `python -m harness`) does not put it on sys.path.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        sys.exit(_run_app())
    except UserError as e:
        for line in str(e).splitlines():
            print(f"error: {line}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except Exception as e:  # noqa: BLE001 - only a full disk is answered here; the rest re-raised
        line = disk_full_line(e)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def _run_app() -> int:
    """Runs the command; the command line's own mistakes (a missing argument, an unknown
    option or command) are one `error:` line too, not click's usage box. Returns the exit code."""
    try:  # Typer's own copy of click (recent Typer), else click's
        from typer._click import exceptions as click_errors
    except ImportError:
        from click import exceptions as click_errors

    try:
        code = app(standalone_mode=False)
    except click_errors.NoArgsIsHelpError as e:  # `harness`, `harness data`: the help
        print(e.ctx.get_help())
        return EXIT_USER_ERROR
    except click_errors.UsageError as e:
        where = e.ctx.command_path if e.ctx else "harness"
        message = " ".join(e.format_message().split())
        print(f"error: {message} (see '{where} --help')", file=sys.stderr)
        return EXIT_USER_ERROR
    except click_errors.ClickException as e:
        print(f"error: {' '.join(e.format_message().split())}", file=sys.stderr)
        return e.exit_code
    except typer.Abort:
        print("interrupted", file=sys.stderr)  # Ctrl-C before or after the tuning loop
        return EXIT_INTERRUPTED
    return code if isinstance(code, int) else 0


def disk_full_line(error: BaseException) -> str | None:
    """One line for a full disk or quota, naming the path when the error carries it (Python's
    OSError) or its message does (TensorFlow's file errors); None for any other error."""
    import errno

    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f": {error.filename}" if error.filename else ""
        return f"no space left on the device{where}; free some and run the command again"
    message = str(error)
    if says_disk_full(message):
        first = message.strip().splitlines()[0][:300]
        return f"no space left on the device ({first}); free some and run the command again"
    return None
