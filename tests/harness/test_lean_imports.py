"""What a driver imports with Keras: scikit-learn only when its Bayesian oracle needs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("algorithm", ["random", "bayesian"])
def test_the_driver_keeps_scikit_learn_for_the_bayesian_oracle_only(tmp_path, algorithm):
    # As `harness tune` does before it imports the tuning loop; then the job's oracle is made
    # and, for a Bayesian job, asked for its first trial (it fits with scikit-learn later).
    script = (
        "import sys\n"
        "from harness.lean_imports import import_keras_without_extras\n"
        f"keep = ('sklearn',) if {algorithm!r} == 'bayesian' else ()\n"
        "import_keras_without_extras(keep=keep)\n"
        "assert 'matplotlib' not in sys.modules\n"
        "from keras_tuner.src.tuners import bayesian\n"
        "print(bayesian.sklearn is not None)\n"
        "from sklearn.metrics import confusion_matrix  # export's, importable either way\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str(algorithm == "bayesian")


def test_tune_passes_the_job_algorithm(monkeypatch, tmp_path, data_dir):
    """`harness tune` keeps scikit-learn exactly for Bayesian jobs (on the tiny imported data:
    `tune` refuses a dataset that was never imported before it gets that far)."""
    from harness import cli, lean_imports
    from harness.job import validate_job
    from tests.conftest import tiny_job

    kept = []
    monkeypatch.setattr(
        lean_imports, "import_keras_without_extras", lambda keep=(): kept.append(keep)
    )

    class Stop(Exception):
        pass

    class Executor:
        def start(self):
            return self

        def let_ray_start_first(self):
            pass

        def close(self):
            pass

    monkeypatch.setattr("harness.ray_execution.executor_for", lambda spec, address: Executor())

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr("harness.tuning.tune", stop)
    for algorithm in ("random", "bayesian", "hyperband"):
        spec = validate_job(tiny_job(tmp_path, tuner={"algorithm": algorithm}))
        with pytest.raises(Stop):
            cli._run(spec, None)
    assert kept == [(), ("sklearn",), ()]
