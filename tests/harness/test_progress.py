"""Progress in a log file (not a terminal): plain, unwrapped, periodic lines; no live bar."""

from __future__ import annotations

import io

from rich.console import Console

from harness import progress
from harness.progress import JobProgress


def test_log_file_gets_unwrapped_lines_when_something_changes(monkeypatch):
    out = io.StringIO()
    console = Console(file=out, width=40, force_terminal=False)
    clock = [1000.0]
    monkeypatch.setattr(progress.time, "time", lambda: clock[0])
    with JobProgress(console, total_trials=5, objective="val_accuracy") as bar:
        assert not bar.live
        running = {"3": {"epoch": 1, "epochs": 4, "metrics": {"val_accuracy": 0.5}}}
        bar.update(0, running, 0, None)  # the first state is logged
        running["3"] = {"epoch": 2, "epochs": 4, "metrics": {"val_accuracy": 0.6}}
        clock[0] += 5
        bar.update(0, running, 0, None)  # changed, but too soon: not logged
        clock[0] += progress.LOG_EVERY_S
        bar.update(0, running, 0, None)  # changed since the last line and due: logged
        bar.update(0, running, 0, None)  # nothing new: not logged
        clock[0] += progress.HEARTBEAT_S - 1
        bar.update(0, running, 0, None)  # nothing new, not yet a heartbeat: not logged
        clock[0] += 1
        bar.update(0, running, 0, None)  # nothing new for HEARTBEAT_S: logged again
        bar.trial_line("trial 3 done val_accuracy=0.7000 fit 12.0s " + "lr=0.001 " * 10)
        bar.update(1, {}, 0, ("3", 0.7))  # a trial finished: logged at once
    lines = out.getvalue().splitlines()
    assert len(lines) == 5, lines  # one line each, however narrow the console
    assert lines[0].startswith("[00:00:00] trials 0/5 | running 1") and "[3 ep 1/4" in lines[0]
    assert "[3 ep 2/4 val_accuracy=0.6000]" in lines[1]
    assert lines[2].startswith("[00:02:35]") and lines[2][10:] == lines[1][10:]  # heartbeat
    assert lines[3].startswith("trial 3 done") and lines[3].endswith("lr=0.001 ")
    assert "trials 1/5" in lines[4] and "best val_accuracy=0.7000 (trial 3)" in lines[4]


def test_a_trial_error_s_line_names_tensorflow_s_cause_not_only_its_preamble():
    """TensorFlow's errors open with "Graph execution error:" and give the cause last: the
    line `harness tune` and `harness status` show carries both."""
    from harness.errors import headline

    message = (
        "InvalidArgumentError: Graph execution error:\n\nDetected at node adam/Reduce defined "
        'at (most recent call last):\n  File "x.py", line 3, in f\n\nShape mismatch in the '
        "collective instance 100.\n\t [[{{node adam/Reduce}}]] [Op:__inference_step_7418]"
    )
    assert headline(message) == (
        "InvalidArgumentError: Graph execution error: Shape mismatch in the collective "
        "instance 100."
    )
    assert headline("ValueError: bad value\nTraceback follows") == "ValueError: bad value"
    assert headline("x" * 500) == "x" * 200 and headline("  \n") == ""


def test_a_confusion_matrix_of_emoji_class_names_prints_no_font_warning(tmp_path):
    """matplotlib's "Glyph 128077 ... missing from font(s)" reached stderr during an export."""
    import warnings

    import numpy as np

    from harness.summaries import write_confusion

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_confusion(tmp_path, np.array([[3, 1], [0, 4]]), ["\U0001f44d", "\U0001f44e"])
    assert list(tmp_path.rglob("events.out.tfevents*"))
