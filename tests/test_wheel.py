"""A built wheel works outside the clone: installed into a fresh virtual environment, its `glanet` command
runs the demo from another directory with the configs and the demo model it carries.

The fresh environment gets the heavy dependencies (torch, OpenVINO, ...) by a path to this environment's
site-packages (a plain .pth line: the editable install of the clone is not active there), so the test
checks the wheel itself without downloading 5 GB again.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import glanet

ROOT = Path(__file__).resolve().parents[1]


def run(argv: list[str], cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **env}
    )
    assert proc.returncode == 0, f"{' '.join(argv)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    run([*pip, "-w", str(dist), str(ROOT)], cwd=dist)
    (built,) = dist.glob("glanet-*.whl")
    return built


def test_the_wheel_carries_the_configs_the_demo_model_and_the_licence(wheel: Path) -> None:
    assert wheel.name.startswith(f"glanet-{glanet.__version__}-")  # pyproject.toml reads glanet.__version__
    names = zipfile.ZipFile(wheel).namelist()
    assert "glanet/assets/glanet_synthactions_demo.pt" in names
    assert (
        "glanet/configs/glanet_r10_synth_demo.toml" in names
        and "glanet/configs/glanet_r34_hmdb51.toml" in names
    )
    assert any(n.endswith("LICENSE") for n in names)
    # the web view's page: served from the package, nothing fetched from the network
    assert {"stream/web/static/index.html", "stream/web/static/app.js", "stream/web/static/style.css"} <= set(
        names
    )
    assert any(n.endswith("entry_points.txt") for n in names)
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


@pytest.mark.timeout(600)
def test_an_installed_wheel_runs_the_demo_from_any_directory(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    (purelib,) = (venv / "lib").glob("python3*/site-packages")
    (purelib / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run(
        [str(python), "-c", "import glanet, stream; print(glanet.__file__, stream.__file__)"], elsewhere
    )
    assert all(str(venv) in p for p in where.stdout.split()), where.stdout  # the wheel's, not the clone's
    assert "run" in run([str(venv / "bin" / "glanet"), "--help"], elsewhere).stdout
    version = run([str(venv / "bin" / "glanet"), "--version"], elsewhere).stdout
    assert version == f"glanet {glanet.__version__}\n"
    proc = run(
        [str(venv / "bin" / "glanet"), "run", "--source", "demo", "--max-frames", "20", "--headless",
         "--no-dashboard"],
        elsewhere,
        GLANET_CACHE_DIR=str(tmp_path / "cache"),
    )  # fmt: skip
    assert "max frames reached: 20 frames" in proc.stderr.splitlines()[-1]
    # a shipped config by its name, from anywhere
    code = "from glanet.config import load_config; print(load_config('glanet_r10_synth_demo'))"
    proc = run([str(python), "-c", code], elsewhere)
    assert "resnet10" in proc.stdout
