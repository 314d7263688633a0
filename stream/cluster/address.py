"""--cluster's address, checked before anything loads (no Ray import here)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from stream.errors import StreamError
from stream.hostport import AddressError, Problem, parse_host_port


class ClusterError(StreamError):
    """The cluster cannot be reached or used, or every shard was lost: one line for the user."""


@dataclass(frozen=True)
class ClusterAddress:
    kind: str  # "auto": a running `ray start` cluster; "ray": a Ray Client URL; "local": nodes started here
    url: str = ""  # ray://HOST:PORT
    nodes: int = 0  # local: how many worker nodes
    cpus: int = 0  # local: CPUs per node (0: this machine's CPUs shared out)

    def __str__(self) -> str:
        if self.kind == "local":
            return f"local:{self.nodes}" + (f"x{self.cpus}" if self.cpus else "")
        return self.url or self.kind


_LOCAL = re.compile(r"^local:(\d+)(?:x(\d+))?$", re.ASCII)  # ASCII: \d alone takes '٣' for 3
_CLIENT = "ray://"


def parse_cluster_address(text: str) -> ClusterAddress:
    """`auto`, `ray://HOST:PORT` or `local:N` (N nodes here; `local:NxC`: C CPUs each). ValueError else."""
    given = text.strip()
    if given == "auto":
        return ClusterAddress("auto")
    if m := _LOCAL.match(given):
        nodes, cpus = int(m.group(1)), int(m.group(2) or 0)
        if not 1 <= nodes <= 64:
            raise ValueError(f"--cluster {text}: local:N wants 1 to 64 nodes")
        if m.group(2) is not None and not 1 <= cpus <= 1024:
            raise ValueError(f"--cluster {text}: local:NxC wants at least 1 CPU a node")
        return ClusterAddress("local", nodes=nodes, cpus=cpus)
    if given.startswith(_CLIENT):
        try:
            parse_host_port(given.removeprefix(_CLIENT), form="ray://HOST:PORT")
            return ClusterAddress("ray", url=given)
        except AddressError as error:
            if error.problem is Problem.PORT_OUT_OF_RANGE:
                raise ValueError(f"--cluster {text}: the port must be 1 to 65535") from None
            # anything else: the forms --cluster takes, below
    raise ValueError(
        f"--cluster {text!r}: give auto (a cluster `ray start` runs here), ray://HOST:PORT (Ray Client) or "
        "local:N (start N nodes on this machine)"
    )


__all__ = ["ClusterAddress", "ClusterError", "parse_cluster_address"]
