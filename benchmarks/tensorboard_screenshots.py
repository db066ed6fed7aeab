"""Screenshots of a job's TensorBoard in headless Chromium: HParams (table), Scalars, Images.

Usage: python benchmarks/tensorboard_screenshots.py JOB_DIR [--out docs/img] [--wait-s 12]

Starts `harness tensorboard JOB_DIR` on a free port, as a user would, then has Chromium's
headless shell (`chromium`, `chromium-headless-shell`, `chromium-browser` or `google-chrome`
on PATH; Debian: `apt install chromium-headless-shell`) render each dashboard and save
`tensorboard_hparams.png`, `tensorboard_scalars.png` and `tensorboard_images.png` in `--out`.
Exits 2 with one line when Chromium or the job's TensorBoard folder is missing.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import NoReturn

REPO = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
# Dashboard -> URL fragment; the HParams tab opens on its table view.
DASHBOARDS = {"hparams": "#hparams", "scalars": "#scalars", "images": "#images"}


def fail(message: str) -> NoReturn:
    """One `error:` line on stderr, exit code 2 (as the harness's own commands)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    for path in Path("/usr/lib/chromium").glob("chrom*"):  # Debian's shell is not on PATH
        if path.is_file() and path.name in ("chromium", "chrome-headless-shell"):
            return str(path)
    return None


def start_tensorboard(job_dir: Path) -> tuple[subprocess.Popen, str]:
    """`harness tensorboard JOB_DIR --port 0`, and the URL it prints."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "tensorboard", str(job_dir), "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            fail(f"harness tensorboard exited: {proc.stdout.read().strip()}")
        found = re.search(r"(http://\S+?/)\s", line)
        if found:
            return proc, found.group(1)
    proc.kill()
    fail("harness tensorboard printed no URL in 120 s")


def screenshot(browser: str, url: str, path: Path, wait_s: float) -> None:
    """One page, rendered after `wait_s` of virtual time (TensorBoard loads its data by XHR)."""
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",  # root in a container
                "--use-angle=swiftshader",  # software WebGL: the charts draw with it
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                "--window-size=1500,950",
                f"--virtual-time-budget={int(wait_s * 1000)}",
                f"--screenshot={path}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job_dir", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    parser.add_argument("--wait-s", type=float, default=12.0)
    args = parser.parse_args()
    browser = find_browser()
    if browser is None:
        fail(f"no headless Chromium on PATH (looked for {', '.join(BROWSERS)})")
    if not (args.job_dir / "tensorboard").is_dir():
        fail(f"{args.job_dir}: no tensorboard/ folder (is it a job directory?)")
    args.out.mkdir(parents=True, exist_ok=True)
    proc, url = start_tensorboard(args.job_dir)
    try:
        urllib.request.urlopen(url, timeout=30).read()  # the server answers before Chromium asks
        for name, fragment in DASHBOARDS.items():
            path = args.out / f"tensorboard_{name}.png"
            screenshot(browser, url + fragment, path, args.wait_s)
            print(f"wrote {path}")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
