"""glanet: the GLANet action recognizer (model, data, training, evaluation, checkpoints)."""

__version__ = "0.1.0"  # the one place it is written: pyproject.toml and `glanet --version` read it
