"""glanet: the GLANet action recognizer (model, data, training, evaluation, checkpoints)."""

__version__ = "0.1.0"
