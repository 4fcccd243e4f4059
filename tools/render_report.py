"""Render a run's report.html to a PNG with headless Chromium, so a person (or a README)
can look at it without a browser.

    apt-get install -y chromium                      # Debian's package
    python tools/render_report.py runs/tiny/report.html docs/report.png
    python tools/render_report.py runs/tiny docs/report.png --width 1100 --height 2600

The page is self-contained (figures are data URIs), so Chromium runs with networking
and every background service off, in a fresh profile that is removed afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
QUIET_FLAGS = (
    "--headless",
    "--no-sandbox",  # root in a container: the sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def find_chromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no Chromium found: apt-get install -y chromium")


def render(html: Path, png: Path, width: int, height: int, timeout_s: float) -> None:
    """Screenshot `html` at width x height CSS pixels into `png`."""
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="medbase-chromium-") as profile:
        cmd = [
            find_chromium(),
            *QUIET_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={png.resolve()}",
            html.resolve().as_uri(),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0 or not png.exists():
        sys.exit(f"chromium failed ({done.returncode}):\n{done.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="report.html, or the run directory holding it")
    parser.add_argument("png", type=Path, help="the PNG to write")
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--timeout-s", type=float, default=120)
    args = parser.parse_args()
    html = args.report / "report.html" if args.report.is_dir() else args.report
    if not html.exists():
        sys.exit(f"{html} does not exist (write it with `medbase report <run>`)")
    render(html, args.png, args.width, args.height, args.timeout_s)
    print(args.png)


if __name__ == "__main__":
    main()
