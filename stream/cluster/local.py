"""local:N: a head and N worker nodes on this machine, on the loopback alone, with a token of the run's own
(or the user's RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from stream.cluster.auth import TokenEnv

LOOPBACK = "127.0.0.1"
LOCAL_RESOURCE = "glanet_local_node_"  # local:N nodes carry glanet_local_node_<i>: their index


@contextlib.contextmanager
def _driver_on_loopback() -> Iterator[None]:
    """`ray.init` turns 127.0.0.1 into the machine's outward address (services.resolve_ip_for_localhost),
    where nodes bound to the loopback do not listen: it keeps 127.0.0.1 only when Ray thinks it runs
    without clusters, so it thinks so while the driver connects (then its node's address answers)."""
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


class LocalCluster:
    def __init__(self, nodes: int, cpus: int) -> None:
        self.nodes, self.cpus = nodes, cpus
        self._token = TokenEnv()
        self._cluster: Any = None  # ray.cluster_utils.Cluster

    def start(self, ray: Any, init_options: dict[str, Any]) -> None:
        """The nodes (their processes inherit the token from this environment), then the driver."""
        from ray.cluster_utils import Cluster

        self._token.enable(generate=True)
        self._cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 0, "include_dashboard": False, "node_ip_address": LOOPBACK},
        )
        for i in range(self.nodes):
            self._cluster.add_node(
                num_cpus=self.cpus, resources={f"{LOCAL_RESOURCE}{i}": 1}, node_ip_address=LOOPBACK
            )
        with _driver_on_loopback():
            ray.init(address=self._cluster.address, _node_ip_address=LOOPBACK, **init_options)
        self._cluster.wait_for_nodes()

    def close(self) -> None:
        """Stop the nodes (after `ray.shutdown`), remove the token, put the environment back."""
        try:
            if self._cluster is not None:
                self._cluster.shutdown()
                self._cluster = None
        finally:
            self._token.close()


__all__ = ["LOCAL_RESOURCE", "LOOPBACK", "LocalCluster"]
