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


def test_summary_of_an_smnet_config():
    result = run("--config", "smnet_r10_synth_demo")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "SMNet (se+me), causal, live window 8" in out and "512 x 3 x 3 at 96 px" in out
    assert "SE/ME modules (4, one per block)" in out and "causal buffers" in out
    offline = run("--config", "smnet_r50_kinetics400")
    assert offline.returncode == 0 and "offline (TSN consensus)" in offline.stdout
    assert "SE/ME modules (16, one per block)" in offline.stdout and "400 classes" in offline.stdout


def test_a_folder_as_config_is_one_line(tmp_path):
    result = run("--config", str(tmp_path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "is a folder" in result.stderr
