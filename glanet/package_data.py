"""Files that ship inside the package (and so in a wheel): the configs and the demo model."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CONFIGS = PACKAGE / "configs"  # also reachable as configs/ at the clone's root (a link)
DEMO_CHECKPOINT = PACKAGE / "assets" / "glanet_synthactions_demo.pt"  # also models/ at the clone's root


def shipped_config(name: str | Path) -> Path | None:
    """The shipped config a name means (`glanet_r10_synth_demo`, `…demo.toml`, `configs/…demo.toml`),
    or None: what lets `--config` name a shipped config from any directory."""
    file = Path(name).name
    path = CONFIGS / (file if file.endswith(".toml") else f"{file}.toml")
    return path if path.is_file() else None
