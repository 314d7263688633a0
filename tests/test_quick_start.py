"""The quick start (docs/getting-started.md), executed as written, at tiny scale: the commands are read from
the page and only the sizes below are changed, so a quick start that stops working fails here."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "getting-started.md"
# the page's text -> what the test runs instead (each must occur: a changed quick start fails loudly)
SMALLER = {
    "--videos-per-class 20": "--videos-per-class 1",
    "--videos-per-class 5": "--videos-per-class 1",
    "--frames 24": "--frames 8",
    "train.epochs=6": "train.epochs=1",
    "'train.sa_anneal=[3,5,0.04]'": "'train.sa_anneal=[0,1,0.04]' --set train.batch_size=2",
    "--source demo": "--source demo --fast --headless --no-dashboard --max-frames 24",
}


def quick_start_commands() -> list[str]:
    text = PAGE.read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None, f"the quick start in {PAGE} has no bash block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.timeout(900)
def test_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    commands = quick_start_commands()
    assert len(commands) == 6
    joined = "\n".join(commands)
    for text, _ in SMALLER.items():
        assert text in joined, f"the quick start no longer says {text!r}: update this test with it"
    (tmp_path / "configs").symlink_to(ROOT / "configs")  # the commands name configs/... relative to the clone
    env = {**os.environ, "GLANET_CACHE_DIR": str(tmp_path / "cache")}
    for line in commands:
        for text, small in SMALLER.items():
            line = line.replace(text, small)
        argv = shlex.split(line)
        if argv[0] == "glanet":  # the installed command, run by this interpreter
            argv = [sys.executable, "-m", "glanet.commands", *argv[1:]]
        else:
            assert argv[:2] == ["python", "run_camera.py"], line
            argv = [sys.executable, str(ROOT / "run_camera.py"), *argv[2:]]
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{line}\n{proc.stderr[-3000:]}"
    report = json.loads((tmp_path / "reports" / "quick" / "report.json").read_text())
    assert report["videos"] == 12  # one of each class
    assert (tmp_path / "exports" / "quick" / "manifest.json").is_file()
    assert "predictions" in proc.stderr.splitlines()[-1]
