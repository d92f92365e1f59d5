"""A real Redis Cluster of the caller's own: 3 masters and 3 replicas by default, each a
`redis-server --cluster-enabled yes` in its own directory, joined by
`redis-cli --cluster create … --cluster-replicas 1 --cluster-yes`.

`start()` waits until every node reports cluster_state:ok; `kill_master(n)` SIGKILLs a master
and `wait_promoted(old)` waits until one of its replicas has taken over its slots and the
cluster is ok again; `stop()` ends every process (also those of a failed start).

Ports: the nodes take free ports from `ports` (a range, e.g. range(7100, 7200) to stay out of
another user's way); each node's cluster bus listens on its port + 10000.
"""

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import redis

from .net import wait_until


def _port_free(port: int) -> bool:
    import socket

    for candidate in (port, port + 10000):
        with socket.socket() as sock:
            # As redis-server binds: a port left in TIME_WAIT by an earlier run is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                return False
    return True


@dataclass
class ClusterNode:
    port: int
    workdir: Path
    process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=0.3, socket_timeout=2)

    def info(self, section: str) -> dict:
        client = self.client()
        try:
            return client.info(section)
        finally:
            client.close()

    def cluster_info(self) -> dict:
        client = self.client()
        try:
            raw = client.execute_command("CLUSTER", "INFO")
        finally:
            client.close()
        text = raw.decode() if isinstance(raw, bytes) else raw
        if isinstance(raw, dict):
            return {str(k): str(v) for k, v in raw.items()}
        return dict(line.split(":", 1) for line in text.strip().splitlines() if ":" in line)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class RedisClusterHarness:
    def __init__(
        self,
        workdir: Path,
        *,
        masters: int = 3,
        replicas: int = 1,
        ports: Iterable[int] = range(7100, 7200),
        node_timeout_ms: int = 2000,
    ) -> None:
        self.workdir = Path(workdir)
        self.masters = masters
        self.replicas = replicas
        self.port_pool = list(ports)
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[ClusterNode] = []
        self._masters_at_kill: set[int] = set()

    # --- life cycle --------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> "RedisClusterHarness":
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            raise RuntimeError("redis-server and redis-cli must be installed")
        count = self.masters * (1 + self.replicas)
        ports = [port for port in self.port_pool if _port_free(port)][:count]
        if len(ports) < count:
            raise RuntimeError(f"not {count} free ports in {self.port_pool[0]}…")
        try:
            for port in ports:
                node = ClusterNode(port, self.workdir / str(port))
                node.workdir.mkdir(parents=True, exist_ok=True)
                self._launch(server, node)
                self.nodes.append(node)
            for node in self.nodes:
                wait_until(partial(self._ping, node), 20, 0.05, f"node {node.port}")
            subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *(node.address for node in self.nodes),
                    "--cluster-replicas",
                    str(self.replicas),
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=timeout,
            )
            self.wait_ok(timeout)
            self._wait_replicas_in_sync(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self, server: str, node: ClusterNode) -> None:
        log = (node.workdir / "redis.log").open("ab")
        try:
            node.process = subprocess.Popen(
                [
                    server,
                    "--port",
                    str(node.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(node.workdir),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    str(self.node_timeout_ms),
                    # A replica may always take over, however long since it last heard from
                    # its master (by default one idle for long refuses: its data may be old).
                    "--cluster-replica-validity-factor",
                    "0",
                    # The masters that are up keep serving their slots while another one
                    # fails over (by default the whole cluster refuses every command then).
                    "--cluster-require-full-coverage",
                    "no",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    @staticmethod
    def _ping(node: ClusterNode) -> bool:
        client = node.client()
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.BusyLoadingError):
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """SIGKILL every node still running (its data is of no further use) and wait."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.kill()
        for node in self.nodes:
            if node.process is not None:
                node.process.wait(timeout=10)
                node.process = None

    # --- state ---------------------------------------------------------------------------------

    @property
    def seeds(self) -> str:
        """REDIS_CLUSTER_NODES for the app: every node (any one of them would do)."""
        return ",".join(node.address for node in self.nodes)

    @staticmethod
    def role(node: ClusterNode) -> str | None:
        try:
            return node.info("replication").get("role")
        except redis.RedisError:
            return None

    @staticmethod
    def _replica_in_sync(node: ClusterNode) -> bool:
        try:
            info = node.info("replication")
        except redis.RedisError:
            return False
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def alive_nodes(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.alive]

    def master_nodes(self) -> list[ClusterNode]:
        return [node for node in self.alive_nodes() if self.role(node) == "master"]

    def state_ok(self) -> bool:
        alive = self.alive_nodes()
        try:
            return bool(alive) and all(
                node.cluster_info().get("cluster_state") == "ok" for node in alive
            )
        except redis.RedisError:
            return False

    def wait_ok(self, timeout: float = 60) -> None:
        wait_until(self.state_ok, timeout, 0.1, "cluster_state:ok on every node")

    # --- faults --------------------------------------------------------------------------------

    def heal(self, timeout: float = 60) -> None:
        """Start every killed node again: it rejoins (its nodes.conf) as a replica of the
        master that took over; returns once every replica is in sync and the cluster ok."""
        server = shutil.which("redis-server")
        assert server is not None
        dead = [node for node in self.nodes if not node.alive]
        for node in dead:
            self._launch(server, node)
        for node in dead:
            wait_until(partial(self._ping, node), 20, 0.05, f"node {node.port}")
        self._wait_replicas_in_sync(timeout)
        self.wait_ok(timeout)

    def _wait_replicas_in_sync(self, timeout: float) -> None:
        """Every replica attached to its master and in sync."""
        wait_until(
            lambda: (
                sum(self._replica_in_sync(node) for node in self.nodes)
                == self.masters * self.replicas
            ),
            timeout,
            0.2,
            "the replicas to attach and sync",
        )

    def node_at(self, port: int) -> ClusterNode:
        return next(node for node in self.nodes if node.port == port)

    def kill_master(self, index: int = 0, port: int | None = None) -> ClusterNode:
        """SIGKILL the `index`-th live master, or the one on `port` (a crash); returns it."""
        self._masters_at_kill = {master.port for master in self.master_nodes()}
        node = self.master_nodes()[index] if port is None else self.node_at(port)
        assert node.process is not None and self.role(node) == "master"
        node.process.kill()
        node.process.wait(timeout=10)
        node.process = None
        return node

    def wait_promoted(self, old: ClusterNode, timeout: float = 60) -> ClusterNode:
        """Until a replica of `old` is master and the cluster is ok again; returns it."""
        before = self._masters_at_kill

        def promoted() -> ClusterNode | None:
            masters = self.master_nodes()
            if len(masters) < self.masters or not self.state_ok():
                return None
            return next((node for node in masters if node.port not in before), None)

        node = wait_until(promoted, timeout, 0.1, f"a replica of {old.port} to take over")
        assert node is not None
        return node
