"""`python -m glanet.summary`: a table for a good config, one clear line and exit 2 for a bad one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
import torchvision

ROOT = Path(__file__).parent.parent


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "glanet.summary", *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_summary_with_imagenet_weights_file(tmp_path):
    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    result = run("--config", "configs/glanet_r18_synth_cpu.toml", "--imagenet-weights", str(weights))
    assert result.returncode == 0, result.stderr
    assert "backbone (resnet18)" in result.stdout and "(512, 4, 4) at 112 px" in result.stdout


def test_bad_inputs_give_one_line_and_exit_2(tmp_path):
    for args, message in [
        (("--config", "configs/missing.toml"), "config file not found"),
        (
            ("--config", "configs/glanet_r18_synth_cpu.toml", "--imagenet-weights", str(tmp_path / "x.pth")),
            "not found",
        ),
        (("--config", "configs/glanet_r18_synth_cpu.toml", "--set", "model.sru_hiden=3"), "unknown key"),
    ]:
        result = run(*args)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr
