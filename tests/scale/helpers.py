"""Scale-out processes of the tests: a PostgreSQL streaming replica made with pg_basebackup, a
Redis Sentinel group, an admin logged in over HTTP."""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import celery.exceptions
import psycopg
import redis
import requests
from celery import Celery
from redis.sentinel import Sentinel

from tests.reliability.helpers import SYNC_TASK, PrivatePostgres, Stack, audit_totals, wait_until


class PrivateReplica(PrivatePostgres):
    """A streaming replica of a PrivatePostgres: `pg_basebackup -R` (it writes the
    primary_conninfo and standby.signal), then started on a port of its own."""

    def init_from(self, primary: PrivatePostgres) -> None:
        self.run_dir.mkdir()
        if os.geteuid() == 0:
            for path in (self.root, self.run_dir):
                shutil.chown(path, "postgres", "postgres")
        self._run(
            str(self.bindir / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(self.data),
            "-R",
            "-X",
            "stream",
            "--no-sync",
            "-c",
            "fast",
        )

    def execute(self, sql: str):
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql).fetchall()

    def caught_up_with(self, primary: PrivatePostgres) -> bool:
        with psycopg.connect(primary.url, autocommit=True) as conn:
            (lsn,) = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        with psycopg.connect(self.url, autocommit=True) as conn:
            (behind,) = conn.execute(
                "SELECT pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn())", [lsn]
            ).fetchone()
        return behind <= 0


def admin_session(base_url: str, username: str, password: str) -> requests.Session:
    """A browser-like admin login through the real login form (CSRF cookie and token)."""
    http = requests.Session()
    page = http.get(f"{base_url}/admin/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = http.post(
        f"{base_url}/admin/login/?next=/admin/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base_url}/admin/login/"},
        timeout=30,
    )
    assert response.status_code == 200 and "/admin/logout/" in response.text, response.text[:500]
    return http


__all__ = ["PrivateReplica", "admin_session", "wait_until"]


class RabbitVhost:
    """A RabbitMQ virtual host of the test's own on the machine's broker (guest may use it),
    so no other user of that broker shares its queues; deleted afterwards."""

    def __init__(self, name: str, host: str = "127.0.0.1", port: int = 5672) -> None:
        self.name = name
        self.url = f"amqp://guest:guest@{host}:{port}/{name}"

    @staticmethod
    def ctl(*args: str) -> str:
        result = subprocess.run(
            ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def create(self) -> None:
        self.ctl("add_vhost", self.name)
        self.ctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")

    def delete(self) -> None:
        self.ctl("delete_vhost", self.name)

    def queues(self) -> dict[str, int]:
        """Queue name → messages published into it so far (RabbitMQ's own count)."""
        out = self.ctl("list_queues", "-p", self.name, "--no-table-headers", "name", "messages")
        return {
            name: int(count)
            for name, count in (line.split("\t") for line in out.splitlines() if line.strip())
        }


class SentinelGroup:
    """A Redis primary, one replica and three sentinels watching them, from the redis-server
    binary (`redis-server sentinel.conf --sentinel`), each on a free port of loopback."""

    MASTER = "shtest"

    def __init__(self, workdir: Path, free_port) -> None:
        self.workdir = workdir
        self.primary_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.processes: dict[str, subprocess.Popen] = {}
        self.relay: ReplicationRelay | None = None

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        try:
            self.processes[name] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()

    def _server(self, name: str, port: int, *extra: str) -> None:
        directory = self.workdir / name
        directory.mkdir()
        self._spawn(
            name,
            [
                shutil.which("redis-server"),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(directory),
                "--save",
                "",
                "--appendonly",
                "no",
                *extra,
            ],
        )

    def start(self, down_after_ms: int = 1000, relay: bool = False) -> None:
        """With `relay`, the replica replicates through a ReplicationRelay (self.relay)."""
        self._server("primary", self.primary_port)
        self.primary_address_port = self.primary_port
        if relay:
            self.relay = ReplicationRelay(self.primary_port)
            self.primary_address_port = self.relay.port
        self._server(
            "replica",
            self.replica_port,
            "--replicaof",
            "127.0.0.1",
            str(self.primary_address_port),
        )
        for index, port in enumerate(self.sentinel_ports):
            config = self.workdir / f"sentinel-{index}.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
                f"sentinel monitor {self.MASTER} 127.0.0.1 {self.primary_address_port} 2\n"
                f"sentinel down-after-milliseconds {self.MASTER} {down_after_ms}\n"
                f"sentinel failover-timeout {self.MASTER} 10000\n"
                f"sentinel parallel-syncs {self.MASTER} 1\n"
            )
            self._spawn(
                f"sentinel-{index}", [shutil.which("redis-server"), str(config), "--sentinel"]
            )
        wait_until(
            self.ready, 60, 0.2, "the replica in sync and three sentinels knowing each other"
        )

    def sentinel(self, index: int = 0) -> redis.Redis:
        return redis.Redis(port=self.sentinel_ports[index], socket_timeout=1, decode_responses=True)

    def ready(self) -> bool:
        try:
            info = redis.Redis(port=self.replica_port, socket_timeout=1).info("replication")
            if info.get("master_link_status") != "up":
                return False
            for index in range(3):
                with self.sentinel(index) as client:
                    state = client.sentinel_master(self.MASTER)
                    if state["num-other-sentinels"] < 2 or state["num-slaves"] < 1:
                        return False
        except redis.RedisError:
            return False
        return True

    def master_port(self) -> int | None:
        """The primary's port as the first sentinel that answers says."""
        for index in range(3):
            try:
                with self.sentinel(index) as client:
                    address = client.sentinel_get_master_addr_by_name(self.MASTER)
                return int(address[1]) if address else None
            except redis.RedisError:
                continue
        return None

    def addresses(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def kill(self, name: str) -> None:
        process = self.processes[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(
            f"----- {path.name} -----\n{path.read_text(errors='replace')[-2000:]}"
            for path in sorted(self.workdir.glob("*.log"))
        )

    def stop(self) -> None:
        if self.relay is not None:
            self.relay.cut()
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


class SentinelStack(Stack):
    """The app's processes configured for the Sentinel group; the test's own Redis client and
    Celery client follow the group's primary too.

    The test's Celery client has no result backend: it only sends, and reads a run's result
    from the key the worker stores it under (through the Sentinel-aware Redis client), so
    nothing of the client's own (a result subscription) has to survive the fail-over — what
    is tested is the app's processes."""

    def __init__(self, *, group: SentinelGroup, **kwargs) -> None:
        super().__init__(**kwargs)
        self.group = group
        db = int(urlsplit(self.redis_url).path.lstrip("/") or 0)
        self.redis = Sentinel(
            [("127.0.0.1", port) for port in group.sentinel_ports], socket_timeout=1
        ).master_for(group.MASTER, db=db, socket_timeout=5, socket_connect_timeout=1)
        url = ";".join(f"sentinel://127.0.0.1:{port}/{db}" for port in group.sentinel_ports)
        self.celery.close()
        self.celery = Celery("sentinel-client", broker=url, set_as_current=False)
        self.celery.conf.update(
            accept_content=["json"],
            task_serializer="json",
            broker_transport_options={"master_name": group.MASTER},
        )

    def sync(self, timeout: float = 90) -> dict:
        """One sync run by the worker, its result read from the key the worker stores it
        under. One not answered within 20 s (its message or its result went to the old
        primary) counts as skipped, marked `unanswered`: the caller's loop runs another."""
        task_id = self.celery.send_task(SYNC_TASK).id
        deadline = time.monotonic() + min(timeout, 20)
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                stored = self.redis.get(f"celery-task-meta-{task_id}")
                meta = json.loads(stored) if stored is not None else {}
                assert meta.get("status") != "FAILURE", meta
                if meta.get("status") == "SUCCESS":
                    return meta["result"]
            time.sleep(0.1)
        return {"skipped": True, "unanswered": True}

    def env(self, **extra: str) -> dict:
        return super().env(
            REDIS_SENTINELS=self.group.addresses(),
            REDIS_SENTINEL_MASTER=self.group.MASTER,
            **extra,
        )


class ReplicationRelay:
    """A TCP relay in front of the primary: the replica, the sentinels and (through them) the
    app all reach the primary at this address, so the sentinels see the replica replicating
    from the address they monitor (else they would "fix" its configuration). `hold()` makes it
    keep what the primary sends on the replication link (the connection that said PSYNC)
    instead of passing it on, a link that stalls; `cut()` closes everything and drops what it
    held: the writes the primary acknowledged and the replica never got."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held = bytearray()
        self._holding = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                replica, _ = self.listener.accept()
                primary = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                continue
            self._sockets += [replica, primary]
            link = {"replication": False}
            for source, sink, from_primary in ((replica, primary, False), (primary, replica, True)):
                threading.Thread(
                    target=self._pump, args=(source, sink, from_primary, link), daemon=True
                ).start()

    def _pump(self, source, sink, from_primary: bool, link: dict) -> None:
        source.settimeout(0.05)
        while not self._closed.is_set():
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            if not from_primary and b"PSYNC" in data.upper():
                link["replication"] = True
            try:
                if from_primary and link["replication"] and self._holding.is_set():
                    self.held += data
                else:
                    sink.sendall(data)
            except OSError:
                return

    def hold(self) -> None:
        self._holding.set()

    def cut(self) -> None:
        self._closed.set()
        for sock in [self.listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()


class ClusterStack(Stack):
    """The app's processes with their live sessions on a Redis Cluster (REDIS_CLUSTER_NODES,
    `shards` virtual shards); the broker, results and cache stay on the plain test Redis
    (`redis_url`: kombu cannot use a cluster). Web servers on ports of their own (`start_web_on`:
    separate gunicorn masters, as separate hosts would be)."""

    def __init__(self, *, cluster, shards: int, **kwargs) -> None:
        from redis.cluster import ClusterNode, RedisCluster

        super().__init__(**kwargs)
        self.cluster, self.shards = cluster, shards
        self.prefix = "shtest"
        self.live = RedisCluster(
            startup_nodes=[ClusterNode("127.0.0.1", node.port) for node in cluster.nodes],
            socket_timeout=5,
            socket_connect_timeout=1,
        )

    def env(self, **extra: str) -> dict:
        return super().env(
            REDIS_CLUSTER_NODES=self.cluster.seeds, REDIS_SHARDS=self.shards, **extra
        )

    def start_web_on(self, port: int, workers: int = 2, **extra):
        self.web_port, self.web_url = port, f"http://127.0.0.1:{port}"
        return self.start_web(
            workers=workers,
            PROMETHEUS_MULTIPROC_DIR=self.log_dir / f"prometheus-multiproc-{port}",
            **extra,
        )

    def _tag(self, shard: int) -> str:
        return f"{{{self.prefix}:{shard}}}"

    def _each_shard(self, read) -> list:
        with contextlib.suppress(redis.RedisError):
            self.live.nodes_manager.initialize()  # after a fail-over
        return [read(self._tag(shard)) for shard in range(self.shards)]

    def stat(self, name: str) -> int:
        return sum(
            int(value or 0)
            for value in self._each_shard(lambda tag: self.live.hget(f"{tag}:stats", name))
        )

    def backlog(self) -> tuple[int, int]:
        rows = self._each_shard(
            lambda tag: (
                self.live.scard(f"{tag}:dirty") + self.live.scard(f"{tag}:dirty:inflight"),
                self.live.xlen(f"{tag}:events"),
            )
        )
        return sum(row[0] for row in rows), sum(row[1] for row in rows)

    def sync(self, timeout: float = 90) -> dict:
        """One run of every shard's sync task on the workers; skipped if any shard was."""
        results = [
            self.celery.send_task("audit.tasks.sync_shard", args=[shard])
            for shard in range(self.shards)
        ]
        done = []
        for result in results:
            try:
                done.append(result.get(timeout=min(timeout, 30)))
            except (celery.exceptions.TimeoutError, redis.RedisError):
                # a shard retrying after its master failed: run again (a failed task raises)
                done.append({"skipped": True})
        return {
            "skipped": any(r["skipped"] for r in done),
            "sessions": sum(r.get("sessions", 0) for r in done),
        }

    def flush_live(self) -> None:
        self.live.flushdb(target_nodes=self.live.PRIMARIES)

    def stop_all(self) -> None:
        try:
            super().stop_all()
        finally:
            self.live.close()


def settle_after_failover(
    stack: Stack, *, answered: int, at_risk: int, sessions: int, events: int
) -> tuple[dict, int]:
    """After a fail-over: every call not at risk flushed to the new primary, then syncs until
    nothing is left; checks what a fail-over must never break (the hourly counts add up to the
    calls, every session and event stored once, no backlog). Returns PostgreSQL's totals and
    the calls answered but not stored (the caller bounds those)."""
    wait_until(lambda: stack.stat("api_calls") >= answered - at_risk, 30, 0.1, "the flushes")
    time.sleep(1)
    stack.sync_until_done(timeout=120)
    totals = audit_totals(stack.database_url)
    assert totals["hour_calls"] == totals["calls"], totals
    assert totals["sessions"] == sessions, totals
    assert totals["events"] == totals["distinct_stream_ids"] == events, totals
    assert stack.backlog() == (0, 0)
    return totals, answered - totals["calls"]
