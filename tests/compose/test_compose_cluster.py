"""docker-compose.cluster.yml, the scaled-out shape as an override of docker-compose.yml: what
docker-compose makes of the two files together (no Docker engine needed)."""

import os
import re
import subprocess

import pytest
import yaml

from testing.net import free_port
from tests.monitoring.helpers import PROMETHEUS_YML
from tests.reliability.helpers import PrivatePostgres

from .helpers import (
    CLUSTER_COMPOSE_FILE,
    COMPOSE_FILE,
    DUMMY_ENV,
    REFERENCE,
    ROOT,
    argv,
    docker_compose,
    environment,
    exposed_ports,
    published_ports,
)
from .test_compose_file import env_example, schema_errors

FILES = (COMPOSE_FILE, CLUSTER_COMPOSE_FILE)
CLUSTER_ENV = {**DUMMY_ENV, "POSTGRES_REPLICATION_PASSWORD": "dummy-replication-password"}
NODES = [f"redis-node-{n}" for n in range(1, 7)]
CLUSTER_DIR = ROOT / "deploy" / "cluster"
# The services that talk to the live sessions, hence to the cluster.
CLUSTER_CLIENTS = {"app", "app-2", "worker", "beat", "migrate"}


def cluster_config(tmp_path, env: dict[str, str] | None = None) -> dict:
    result = docker_compose(tmp_path, CLUSTER_ENV if env is None else env, "config", files=FILES)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> dict[str, dict]:
    return cluster_config(tmp_path_factory.mktemp("compose-cluster"))["services"]


def test_docker_compose_accepts_the_override(tmp_path):
    result = docker_compose(tmp_path, CLUSTER_ENV, "config", "-q", files=FILES)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr


def test_the_override_follows_the_compose_specification_schema(tmp_path):
    assert schema_errors(yaml.safe_load(CLUSTER_COMPOSE_FILE.read_text())) == []
    assert schema_errors(cluster_config(tmp_path)) == []


def test_the_replication_password_is_required(tmp_path):
    result = docker_compose(tmp_path, DUMMY_ENV, "config", "-q", files=FILES)
    assert result.returncode != 0
    assert "set POSTGRES_REPLICATION_PASSWORD in .env" in result.stderr, result.stderr


def test_the_cluster_services_come_on_top_of_the_base_ones(cluster, services):
    assert set(cluster) - set(services) == {
        *NODES,
        "redis-cluster-init",
        "postgres-replica",
        "app-2",
        "proxy",
    }


def test_every_client_of_the_live_sessions_names_every_node(cluster):
    for name in CLUSTER_CLIENTS:
        nodes = environment(cluster[name])["REDIS_CLUSTER_NODES"].split(",")
        assert nodes == [f"{node}:6379" for node in NODES], name


def test_celery_keeps_a_plain_redis_broker(cluster):
    """kombu cannot use a Redis Cluster: the broker and results stay on the base `redis`."""
    for name in CLUSTER_CLIENTS:
        env = environment(cluster[name])
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379/"), name
        assert env["CELERY_RESULT_BACKEND"].startswith("redis://redis:6379/"), name
        assert env["CELERY_BROKER_URL"] != env["CELERY_RESULT_BACKEND"]


def test_the_cluster_is_formed_once_with_a_replica_per_primary(cluster):
    init = cluster["redis-cluster-init"]
    script = argv(init["entrypoint"])[-1]
    create = re.search(r"redis-cli --cluster create (.*?)--cluster-yes", script, re.S)
    assert create, script
    assert re.findall(r"redis-node-\d:6379", create.group(1)) == [f"{n}:6379" for n in NODES]
    assert "--cluster-replicas 1" in create.group(1)
    # Formed already (volumes kept across a restart): nothing to do.
    assert "cluster_state:ok" in script.split("redis-cli --cluster create")[0]
    assert init["restart"] == "no"
    for name in CLUSTER_CLIENTS:
        condition = cluster[name]["depends_on"]["redis-cluster-init"]["condition"]
        assert condition == "service_completed_successfully", name


def test_each_node_is_a_persistent_cluster_node_announcing_its_name(cluster):
    for node in NODES:
        service = cluster[node]
        assert service["hostname"] == node
        command = argv(service["entrypoint"])[-1]
        for option in (
            "--cluster-enabled yes",
            "--cluster-preferred-endpoint-type hostname",
            "--appendonly yes",
            "--maxmemory-policy noeviction",
        ):
            assert option in command, (node, option)
        assert [volume.split(":")[1] for volume in service["volumes"]] == ["/data"]
        assert 6379 in exposed_ports(service)
        assert not published_ports(service)


@pytest.mark.parametrize(
    "script",
    [
        lambda cluster: argv(cluster["redis-cluster-init"]["entrypoint"])[-1],
        lambda cluster: argv(cluster["postgres-replica"]["entrypoint"])[-1],
        lambda cluster: argv(cluster["redis-node-1"]["entrypoint"])[-1],
        lambda cluster: (CLUSTER_DIR / "postgres-replication.sh").read_text(),
    ],
    ids=["cluster-init", "replica-entrypoint", "node-entrypoint", "replication-init"],
)
def test_the_shell_scripts_parse(cluster, script):
    text = script(cluster).replace("$$", "$")
    result = subprocess.run(["sh", "-n"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_replica_is_made_from_the_primary_and_serves_the_reads(cluster):
    replica = cluster["postgres-replica"]
    script = argv(replica["entrypoint"])[-1]
    assert "pg_basebackup --host postgres --username replicator" in script
    assert "--write-recovery-conf" in script
    assert replica["image"] == cluster["postgres"]["image"]
    mounts = {volume.split(":")[1]: volume for volume in cluster["postgres"]["volumes"]}
    assert "postgres-replication.sh" in mounts["/docker-entrypoint-initdb.d/50-replication.sh"]
    replication = (CLUSTER_DIR / "postgres-replication.sh").read_text()
    assert "REPLICATION LOGIN" in replication
    assert "host replication replicator all scram-sha-256" in replication
    for name in ("app", "app-2"):
        assert "@postgres-replica:5432/" in environment(cluster[name])["DATABASE_REPLICA_URL"]
    assert environment(cluster["grafana"])["GRAFANA_DB_HOST"] == "postgres-replica:5432"


def test_the_second_app_runs_as_the_first(cluster):
    """app-2 is written out (an `extends` would copy app's published port): kept equal."""
    app, second = cluster["app"], cluster["app-2"]
    for key in ("image", "command", "healthcheck", "tmpfs", "stop_grace_period", "depends_on"):
        assert second[key] == app[key], key
    app_env, second_env = environment(app), environment(second)
    assert second_env.pop("ALLOWED_HOSTS").replace("app-2", "app") == app_env.pop("ALLOWED_HOSTS")
    assert second_env == app_env
    assert not published_ports(second)


def test_the_second_app_passes_on_every_optional_setting_the_first_does():
    """The optional variables (passed only when set) are not in the resolved file: compare the
    names as written."""
    base = yaml.safe_load(COMPOSE_FILE.read_text())
    override = yaml.safe_load(CLUSTER_COMPOSE_FILE.read_text())
    app = set(base["x-django-environment"]) | set(base["services"]["app"]["environment"])
    second = set(override["services"]["app-2"]["environment"])
    assert second == app | set(override["x-cluster-environment"])


def test_the_proxy_balances_both_apps_and_is_the_trusted_hop(cluster):
    proxy = cluster["proxy"]
    conf = (CLUSTER_DIR / "nginx.conf").read_text()
    upstream = re.search(r"upstream sessionhub \{(.*?)\}", conf, re.S)
    assert upstream
    assert re.findall(r"server (\S+?):8000", upstream.group(1)) == ["app", "app-2"]
    (listen,) = re.findall(r"listen (\d+);", conf)
    assert [port.target for port in published_ports(proxy)] == [int(listen)]
    assert [port.host_ip for port in published_ports(proxy)] == ["127.0.0.1"]
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in conf
    address = proxy["networks"]["internal"]["ipv4_address"]
    for name in ("app", "app-2"):
        assert environment(cluster[name])["TRUSTED_PROXIES"] == address
        assert "internal" in cluster[name]["networks"]


def test_prometheus_scrapes_both_apps_with_the_base_configuration_otherwise(cluster):
    mounts = {volume.split(":")[1]: volume for volume in cluster["prometheus"]["volumes"]}
    assert "deploy/cluster/prometheus.yml" in mounts["/etc/prometheus/prometheus.yml"]
    base = yaml.safe_load(PROMETHEUS_YML.read_text())
    shape = yaml.safe_load((CLUSTER_DIR / "prometheus.yml").read_text())
    (job,) = [job for job in shape["scrape_configs"] if job["job_name"] == "sessionhub"]
    assert job["static_configs"] == [{"targets": ["app:8000", "app-2:8000"]}]
    job["static_configs"] = [{"targets": ["app:8000"]}]
    assert shape == base


def test_the_cluster_images_are_the_base_ones(cluster, services):
    assert {cluster[node]["image"] for node in [*NODES, "redis-cluster-init"]} == {
        services["redis"]["image"]
    }
    assert re.fullmatch(r"nginx:\d+\.\d+\.\d+-alpine", cluster["proxy"]["image"])


@pytest.mark.slow
def test_the_replication_init_script_lets_a_replica_copy_the_primary_with_its_password(tmp_path):
    """deploy/cluster/postgres-replication.sh run as the postgres image runs it (psql over the
    local socket, at database creation) on a private PostgreSQL whose pg_hba.conf is the
    image's (trust locally, passwords over TCP): pg_basebackup then copies the primary as
    `replicator` with the password, and not without it."""
    primary = PrivatePostgres(free_port())
    try:
        primary.init()
        (primary.data / "pg_hba.conf").write_text(
            "local all all trust\nhost all all all scram-sha-256\n"
        )
        primary.start()
        password = "dummy-replication-password"
        env = {
            "PATH": os.environ["PATH"],
            "PGHOST": str(primary.run_dir),
            "PGPORT": str(primary.port),
            "PGDATA": str(primary.data),
            "POSTGRES_USER": "postgres",
            "POSTGRES_DB": "postgres",
            "POSTGRES_REPLICATION_PASSWORD": password,
        }
        script = CLUSTER_DIR / "postgres-replication.sh"
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run(
            [*as_postgres, "sh", "-c", f"cat {script} | sh"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        primary._run(str(primary.bindir / "pg_ctl"), "-D", str(primary.data), "reload")

        def basebackup(secret: str, target: str) -> subprocess.CompletedProcess:
            command = [
                str(primary.bindir / "pg_basebackup"),
                *("--host", "127.0.0.1", "--port", str(primary.port), "--username", "replicator"),
                *("--pgdata", str(primary.root / target), "--write-recovery-conf"),
                *("--wal-method", "stream", "--checkpoint", "fast", "--no-password"),
            ]
            return subprocess.run(
                [*as_postgres, *command],
                env={"PATH": os.environ["PATH"], "PGPASSWORD": secret},
                capture_output=True,
                text=True,
                timeout=120,
            )

        refused = basebackup("not-the-password", "refused")
        assert refused.returncode != 0
        assert "password authentication failed" in refused.stderr, refused.stderr
        copied = basebackup(password, "replica")
        assert copied.returncode == 0, copied.stderr
        assert (primary.root / "replica" / "standby.signal").exists()
        assert "primary_conninfo" in (primary.root / "replica" / "postgresql.auto.conf").read_text()
    finally:
        primary.destroy()


def test_env_example_lists_every_variable_the_override_reads():
    override = CLUSTER_COMPOSE_FILE.read_text()
    referenced = {match.group(1) for match in REFERENCE.finditer(override)}
    assert referenced - set(env_example()) == set()
    assert env_example()["POSTGRES_REPLICATION_PASSWORD"] == ""


def test_the_replication_password_reaches_only_the_two_databases(cluster):
    value = CLUSTER_ENV["POSTGRES_REPLICATION_PASSWORD"]
    receivers = {
        name
        for name, service in cluster.items()
        if any(value in setting for setting in environment(service).values())
    }
    assert receivers == {"postgres", "postgres-replica"}
