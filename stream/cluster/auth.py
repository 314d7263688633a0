"""Ray's token authentication for the clusters glanet starts and joins.

Ray (>= 2.52) reads RAY_AUTH_MODE=token and the token (RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH
names, else ~/.ray/auth_token) from the environment: every process of a node inherits them from whoever
starts it, and this process caches both, so a change is followed by `_refresh`. Without a token, anyone
who reaches the GCS port can run any code on every node.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

from stream.cluster.address import ClusterError

MODE, TOKEN, TOKEN_PATH = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN = Path("~/.ray/auth_token")
HOW_TO_TURN_ON = (
    "start every node with RAY_AUTH_MODE=token and the same RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH), "
    "e.g. `RAY_AUTH_MODE=token RAY_AUTH_TOKEN=$(openssl rand -hex 32) ray start --head`, "
    "and run glanet with the same two"
)


def has_token() -> bool:
    """Whether this process has a token to give Ray (the environment's, or Ray's default file)."""
    return bool(os.environ.get(TOKEN) or os.environ.get(TOKEN_PATH)) or DEFAULT_TOKEN.expanduser().is_file()


def _refresh() -> None:
    """Ray caches the mode (its config) and the token: read both again (config first, as Ray's tests do)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


class TokenEnv:
    """The environment with token auth on, for the cluster this process starts or joins: the user's token
    if RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH is set, else a fresh one in a file only this user reads, in a
    private folder removed at `close`, which also puts the environment back as it was."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] | None = None
        self._folder: str | None = None

    def enable(self, *, generate: bool) -> None:
        """Token mode on; `generate`: a token of this run's own unless the user gave one."""
        self._saved = {k: os.environ.get(k) for k in (MODE, TOKEN, TOKEN_PATH)}
        path = os.environ.get(TOKEN_PATH)
        if not os.environ.get(TOKEN) and path and not os.access(path, os.R_OK):
            raise ClusterError(f"{TOKEN_PATH}={path}: cannot read that file (it holds the cluster's token)")
        if generate and not os.environ.get(TOKEN) and not path:
            self._folder = tempfile.mkdtemp(prefix="glanet-ray-auth-")  # mode 0700
            token_file = os.path.join(self._folder, "token")
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
            os.environ[TOKEN_PATH] = token_file  # a path, not the token: the token stays out of every env
        os.environ[MODE] = "token"
        _refresh()

    def close(self) -> None:
        if self._saved is None:
            return
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved = None
        _refresh()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


__all__ = ["HOW_TO_TURN_ON", "TokenEnv", "has_token"]
