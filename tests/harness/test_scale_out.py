"""Scale-out: MirroredStrategy in a trial, a two-node `ray start` cluster (trials on both nodes,
token authentication), and surviving SIGKILLs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from rich.console import Console

from harness.job import validate_job
from harness.jobdir import JobDir, read_json
from harness.tuning import tune
from tests.conftest import PINNED_CNN, REPO, learning_rates, tiny_job

# conftest's small pinned net, its learning rate left to the tuner (trials differ only there).
DRAWN_RATE = {k: v for k, v in PINNED_CNN.items() if k != "learning_rate"}


def start_driver(job: dict, tmp_path: Path, *extra: str, command: str = "tune"):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    target = str(path) if command == "tune" else job["output_dir"]
    return subprocess.Popen(
        [sys.executable, "-m", "harness", command, target, *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Unbuffered: what a driver printed before a SIGKILL is read afterwards. Without the
        # allocator setting conftest gives this process: the driver sets it for its workers.
        env={
            **{k: v for k, v in os.environ.items() if k != "TF_CPU_ALLOCATOR_USE_BFC"},
            "COLUMNS": "200",
            "PYTHONUNBUFFERED": "1",
        },
        start_new_session=True,
    )


def wait_for(condition, timeout: float, what: str, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"driver exited before {what}:\n{proc.stdout.read()}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def finish(proc, timeout: float = 300) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # never leave a driver running after the test
        out, _ = proc.communicate()
        pytest.fail(f"driver did not finish in {timeout} s:\n{out}")
    assert proc.returncode == 0, out
    return out


def _alive(process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def slow_job(tmp_path: Path, **sections) -> dict:
    """Trials of several epochs, one at a time, so a kill lands mid-trial: a kill comes within
    about 0.2 s of the first epoch's end (`wait_for` polls), and the 4 epochs left take longer
    than that even where an epoch of the tiny data takes 0.1 s."""
    base = {
        "tuner": {"algorithm": "random", "max_trials": 2, "epochs": 5},
        "resources": {"cpus_per_trial": 1, "max_concurrent_trials": 1, "max_retries": 2},
        "export": {"policy": "none"},
    }
    base.update(sections)
    return tiny_job(tmp_path, **base)


def epoch_reached(job_dir: JobDir, trial_id: str, epoch: int):
    return lambda: (
        (read_json(job_dir.trial_dir(trial_id) / "progress.json", {}) or {}).get("epoch", 0)
        >= epoch
    )


def test_mirrored_strategy_over_two_logical_cpus(ray_local, tmp_path):
    job = tiny_job(
        tmp_path,
        # With rungs at half an epoch and at 1, ranked by averaged weights: the mid-epoch
        # validations save and restore the training metrics' mirrored variables, and the
        # mirrored weights are read, swapped for their average and put back.
        search_space={
            "name": "image_cnn",
            "fixed": {k: v for k, v in PINNED_CNN.items() if k != "dense_units"},
            "choices": {"dense_units": [32, 128]},  # two models of other sizes, in turn
        },
        tuner={"algorithm": "grid", "max_trials": 2, "epochs": 2},
        # Both trials in one warm worker: its second trial's collectives failed ("Shape
        # mismatch in the collective instance 100") while each trial made its own strategy.
        resources={"cpus_per_trial": 1, "logical_cpu_devices": 2, "max_concurrent_trials": 1},
    )
    job["tuner"]["pruning"] = {
        "rule": "asha",
        "grace_epochs": 0.5,
        "reduction_factor": 2,
        "rung_averaging": 0.5,
    }
    spec = validate_job(job)
    outcome = tune(spec, Console(quiet=True))
    records = JobDir(spec.job_dir()).trial_records()
    assert [r["status"] for r in records] != ["FAILED"] * 2, [r.get("message") for r in records]
    assert {r["status"] for r in records} <= {"COMPLETED", "PRUNED"}, [
        r.get("message") for r in records
    ]
    run = records[0]["run"]
    assert run["replicas"] == 2  # num_replicas_in_sync
    assert run["global_batch_size"] == 2 * spec.data.batch_size
    assert [(c["epochs_done"], c["averaged"]) for c in run["checks"]] == [(0.5, True), (1, True)]
    assert records[1]["run"]["pid"] == run["pid"]  # the same warm worker
    assert outcome.failed == 0 and outcome.exported  # trains and exports


def test_a_worker_then_the_driver_killed_the_job_ends_as_one_run_would(tmp_path, data_dir):
    """One job through every kill (one driver run less than a test each): SIGKILL of trial 0's
    worker (Ray retries it in a new one), SIGKILL of the driver while trial 1 trains, SIGTERM
    of the resumed driver (state saved, exit 130), then a second resume. The job ends as one
    run would: each trial recorded once, one curve per trial."""
    job = slow_job(tmp_path)
    job_dir = JobDir(job["output_dir"])
    proc = start_driver(job, tmp_path)
    wait_for(epoch_reached(job_dir, "0", 1), 240, "trial 0 to train", proc)
    attempts = job_dir.trial_dir("0") / "attempts.jsonl"
    victim = json.loads(attempts.read_text().splitlines()[0])["pid"]
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: (
            len([r for r in job_dir.trial_records() if r["status"] == "COMPLETED"]) >= 1
            and epoch_reached(job_dir, "1", 1)()
        ),
        300,
        "trial 0 to be retried and trial 1 to be mid-training",
        proc,
    )
    first = job_dir.trial_records()[0]
    pids = [json.loads(line)["pid"] for line in attempts.read_text().splitlines()]
    assert len(pids) == 2 and pids[0] == victim and pids[1] != victim  # retried in a new worker
    assert first["run"]["attempts"] == 2  # run.json counts Ray's retry
    local_ray = psutil.Process(proc.pid).children(recursive=True)
    assert any("raylet" in " ".join(p.cmdline()) for p in local_ray)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # The local Ray the driver started dies with it (its agents ignore SIGTERM), and
    # `harness status` sees the driver as dead although driver.pid is still there.
    wait_for(lambda: not [p for p in local_ray if _alive(p)], 60, "the local Ray to exit")
    out, _ = proc.communicate(timeout=30)  # what the driver printed before the kill
    # Said in the harness's words, not Ray's "(raylet) Task TrialWorker.run failed ...".
    assert "(raylet)" not in out and "a trial's worker died (" in out, out
    assert (job_dir.root / "driver.pid").exists() and not job_dir.driver_alive()
    status = subprocess.run(
        [sys.executable, "-m", "harness", "status", job["output_dir"]],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert "INTERRUPTED" in status.stdout and "RUNNING" not in status.stdout
    # SIGTERM (a scheduler's stop) of the resumed driver while trial 1 trains again.
    progress = job_dir.trial_dir("1") / "progress.json"
    progress.unlink(missing_ok=True)
    proc = start_driver(job, tmp_path, command="resume")
    wait_for(epoch_reached(job_dir, "1", 1), 240, "trial 1 to train again", proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "harness resume" in out
    oracle = json.loads((job_dir.oracle_dir / "oracle.json").read_text())
    assert "1" in oracle["ongoing_trials"].values()  # resumable: the trial will run again
    out = finish(start_driver(job, tmp_path, command="resume"))
    records = job_dir.trial_records()
    assert [r["trial_id"] for r in records] == ["0", "1"]  # no duplicates, none lost
    assert all(r["status"] == "COMPLETED" for r in records)
    # The workers ran with TensorFlow's BFC allocator (harness.tf_env): only it counts a peak.
    assert all(r["run"]["tensorflow_peak_mb"] > 0 for r in records)
    assert records[0]["run"]["runs"] == 1 and records[0]["score"] == first["score"]
    assert records[1]["run"]["runs"] == 3  # the trial in flight ran again, twice
    assert "2 completed, 0 pruned, 0 failed" in out
    # One curve per trial: a killed attempt's or run's epochs are cleared before the next trains.
    from tensorboard.backend.event_processing import event_accumulator

    for trial_id in ("0", "1"):
        validation = event_accumulator.EventAccumulator(
            str(job_dir.trial_board(trial_id) / "validation"), size_guidance={"tensors": 0}
        )
        validation.Reload()
        assert [e.step for e in validation.Tensors("epoch_accuracy")] == list(range(5)), trial_id


def test_warm_workers_keep_their_gpus_for_life(ray_local, tmp_path):
    """`ray_local` declares 2 GPUs (stand-ins on this CPU machine: Ray only sets
    CUDA_VISIBLE_DEVICES); each warm worker runs several trials and must see the same GPU id in
    every one."""
    job = tiny_job(
        tmp_path,
        # A small fixed net (only the learning rate drawn): the test is about processes.
        search_space={"name": "image_cnn", "fixed": DRAWN_RATE},
        tuner={"max_trials": 4, "epochs": 1},
        resources={"cpus_per_trial": 1, "gpus_per_trial": 1, "max_concurrent_trials": 2},
        export={"policy": "none"},
    )
    tune(validate_job(job), Console(quiet=True))
    runs = [r["run"] for r in JobDir(job["output_dir"]).trial_records()]
    assert [r["status"] for r in runs] == ["COMPLETED"] * 4
    gpus_by_pid: dict[int, set] = {}
    for run in runs:
        gpus_by_pid.setdefault(run["pid"], set()).add(tuple(run["gpu_ids"]))
    assert len(gpus_by_pid) == 2  # two warm workers served all four trials
    # Each worker imported TensorFlow in its `warm` call, which runs before the first trial
    # queued behind it: no trial paid for the import.
    assert all(run["timings"]["import_s"] < 1.0 for run in runs), [r["timings"] for r in runs]
    assert all(len(ids) == 1 for ids in gpus_by_pid.values())  # each kept its GPU
    assert {ids.pop() for ids in gpus_by_pid.values()} == {("0",), ("1",)}


def test_hyperband_rounds_continue_from_earlier_checkpoints(ray_local, tmp_path):
    job = tiny_job(
        tmp_path,
        # Two brackets: two 1-epoch trials, the better one continued to epoch 2; then two
        # 2-epoch trials.
        tuner={"algorithm": "hyperband", "max_trials": 6, "epochs": 2, "hyperband_factor": 2},
        # A cosine schedule over the job's 2 epochs, no warm-up: at 0 when the plan ends. A
        # small net, only its learning rate drawn: the rounds and their weights are the test.
        search_space={
            "name": "image_cnn",
            "fixed": {**DRAWN_RATE, "lr_schedule": "cosine", "warmup_fraction": 0.0},
        },
        export={"policy": "none"},
    )
    spec = validate_job(job)
    tune(spec, Console(quiet=True))
    records = {r["trial_id"]: r for r in JobDir(spec.job_dir()).trial_records()}
    continued = [r for r in records.values() if r["run"].get("warm_start_from")]
    assert continued, "no Hyperband round continued an earlier trial"
    for record in continued:
        values = record["hyperparameters"]["values"]
        parent = records[record["run"]["warm_start_from"]]
        assert record["run"]["warm_start_from"] == values["tuner/trial_id"]
        # Same configuration, trained on from where the parent stopped.
        shared = {k: v for k, v in values.items() if not k.startswith("tuner/")}
        assert shared == {
            k: v for k, v in parent["hyperparameters"]["values"].items() if k in shared
        }
        steps = [o["step"] for o in record["metrics"]["metrics"]["val_accuracy"]["observations"]]
        assert steps[0] == values["tuner/initial_epoch"] > 0
        # Loaded weights: the first continued epoch is no worse than a fresh model's first.
        first_loss = record["metrics"]["metrics"]["loss"]["observations"][0]["value"][0]
        parent_first = parent["metrics"]["metrics"]["loss"]["observations"][0]["value"][0]
        assert first_loss < parent_first
        # The schedule goes on from the parent's epoch: the continued round ends the plan at a
        # learning rate of 0 (a new warm-up from step 0 would end it where the parent did).
        ended, parent_ended = (
            learning_rates(JobDir(spec.job_dir()).trial_board(r["trial_id"]))[-1]
            for r in (record, parent)
        )
        assert parent_ended > 1e-5 and ended < 1e-3 * parent_ended


def test_asha_promotion_pauses_and_continues_trials_on_ray(ray_local, tmp_path):
    """ASHA's promotion end to end: scores known in advance (`RankedCNN`: val_score = the
    `rank` hyperparameter), so each pause and continuation is too. Rungs at 0.5 and 1 epoch of
    2, factor 2. The default point (0.9) pauses alone at 0.5, continues from there once a second
    trial is below it, pauses alone at 1, and continues from 1 to the end once a second trial
    reaches that rung; the other three each stop at a rung."""
    pruning = {"rule": "asha", "grace_epochs": 0.5, "reduction_factor": 2, "promotion": True}
    job = tiny_job(
        tmp_path,
        search_space={"name": "tests.helpers.hypermodels:RankedCNN", "fixed": PINNED_CNN},
        tuner={
            "max_trials": 4,
            "epochs": 2,
            "pruning": pruning,
            "objective": {"name": "val_score", "direction": "max"},
        },
        resources={"cpus_per_trial": 1, "max_concurrent_trials": 1},
        export={"policy": "none"},
    )
    spec = validate_job(job)
    outcome = tune(spec, Console(quiet=True))
    job_dir = JobDir(spec.job_dir())
    records = {r["hyperparameters"]["values"]["rank"]: r for r in job_dir.trial_records()}
    assert sorted(records) == [0.1, 0.5, 0.7, 0.9]  # 4 draws; continuations are no new trials
    best = records[0.9]
    assert best["run"]["status"] == "COMPLETED" and best["run"]["continued_from"] == [0.5, 1.0]
    assert outcome.best[0] == best["trial_id"] and outcome.completed == 1
    # Its history is whole: epoch 1 from the first continuation, epoch 2 from the second.
    steps = [o["step"] for o in best["metrics"]["metrics"]["val_score"]["observations"]]
    assert steps == [0, 1]
    for rung in (0.5, 1):
        assert job_dir.paused_path(best["trial_id"], rung).exists()
    # The 0.1 trial is never in the top half of its rung: it ends where it paused, at 0.5.
    assert records[0.1]["run"]["pruned"]["epochs_done"] == 0.5
    assert "ASHA: paused at 0.5 epochs" in records[0.1]["run"]["pruned"]["reason"]
    attempts = (job_dir.trial_dir(best["trial_id"]) / "attempts.jsonl").read_text().splitlines()
    assert len(attempts) == 3  # its first run and two continuations


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_cluster_started_with_ray_start_and_token_authentication(tmp_path, data_dir):
    """The README's recipe with real `ray start` processes (a head and a second node on this
    machine), token authentication on as Ray >= 2.59 turns it on: the job runs on both nodes
    with the token set; without it the harness answers in one line that says what to set."""
    import secrets

    ray_bin = str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    token = secrets.token_hex(16)
    home = tmp_path / "home"  # no ~/.ray/auth_token of the user's to fall back on
    home.mkdir()
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    # Ray's knob, for time only: a node stops at once on SIGTERM instead of draining for 30 s.
    env = {**os.environ, "HOME": str(home), **auth, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    common = ["--num-cpus=1", "--block", "--disable-usage-stats"]
    head = subprocess.Popen(
        [ray_bin, "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    nodes = [head]
    try:
        address = f"127.0.0.1:{port}"
        wait_for(lambda: _port_open(port), 60, "the head to listen")
        nodes.append(
            subprocess.Popen(
                [ray_bin, "start", f"--address={address}", *common],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        # The job's own search space, from the directory harness runs in: on a cluster the
        # workers get it only through Ray's runtime environment (py_modules), not the path.
        project = tmp_path / "project"
        (project / "mypkg").mkdir(parents=True)
        (project / "mypkg" / "__init__.py").write_text("")
        (project / "mypkg" / "models.py").write_text(
            "from search_spaces.image_cnn import ImageCNN\n\n\nclass Mine(ImageCNN):\n    pass\n"
        )
        job = tiny_job(
            tmp_path,
            search_space={"name": "mypkg.models:Mine", "fixed": {"filters_1": 32}},
            # Two slots of 1 CPU on two 1-CPU nodes: one warm worker on each.
            tuner={"max_trials": 2, "epochs": 1},
            resources={"cpus_per_trial": 1, "max_concurrent_trials": 2},
            export={"policy": "none"},
        )
        path = tmp_path / "job.yaml"
        path.write_text(yaml.safe_dump(job))
        wait_for(lambda: _alive_nodes(address, env) == 2, 90, "the second node to join")
        command = [sys.executable, "-m", "harness", "tune", str(path), "--address", address]
        run = subprocess.run(
            command, capture_output=True, text=True, cwd=project, env=env, timeout=400
        )
        assert run.returncode == 0, run.stdout + run.stderr
        records = JobDir(job["output_dir"]).trial_records()
        assert [r["status"] for r in records] == ["COMPLETED"] * 2
        assert len({r["run"]["node_id"] for r in records}) == 2  # both nodes ran trials
        no_token = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")}
        # Only here (a node started with it may give up before a busy head answers): the
        # refused driver stops after 3 tries of its cluster-id query instead of 20 (1 s each).
        no_token["RAY_NUM_REDIS_GET_RETRIES"] = "3"
        refused = subprocess.run(
            [*command, "--set", f"output_dir={tmp_path / 'other'}"],
            capture_output=True,
            text=True,
            cwd=project,
            env=no_token,
            timeout=400,
        )
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert refused.stderr.splitlines() == [refused.stderr.strip()]
        assert refused.stderr.startswith(f"error: cannot reach Ray at {address}")
        assert "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN" in refused.stderr
    finally:
        for node in reversed(nodes):
            os.killpg(node.pid, signal.SIGTERM)
        for node in nodes:
            try:
                node.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive_nodes(address: str, env: dict) -> int:
    script = (
        f"import ray; ray.init(address={address!r}, logging_level='ERROR');"
        "print(sum(n['Alive'] for n in ray.nodes()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    lines = out.stdout.strip().splitlines()
    return int(lines[-1]) if out.returncode == 0 and lines else 0
