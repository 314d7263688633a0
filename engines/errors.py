"""The engines' errors: a short hierarchy; each message is one line naming the cause and the fix."""

from __future__ import annotations


class EngineError(RuntimeError):
    """An engine could not be built, loaded or run; the message names the cause and the fix."""


class EngineUnavailable(EngineError):
    """The requested backend cannot run on this machine (no GPU, a runtime not installed, ...)."""


class EngineNotImplemented(EngineError, NotImplementedError):
    """Something this project does not implement (e.g. int8 TensorRT plans); the message says what to use."""
