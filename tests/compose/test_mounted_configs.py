"""Every configuration file compose mounts, checked by its own tool as the container sees it:
the files are laid out at their container paths (under tmp_path) from the compose mounts."""

import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.monitoring.helpers import need, run

from .helpers import DUMMY_ENV, argv, environment, exposed_ports, mounts

ENV_REFERENCE = re.compile(r"\$__env\{(\w+)\}")


def expand(value: str, env: dict[str, str]) -> str:
    """A provisioning value as Grafana reads it: $__env{NAME} from the container's env."""
    return ENV_REFERENCE.sub(lambda match: env[match.group(1)], value)


def bind_mounts(service: dict):
    return [m for m in mounts(service) if m.kind == "bind"]


def host_path(service: dict, container_path: str) -> Path:
    """The file of this machine that a container path of `service` shows."""
    for mount in sorted(bind_mounts(service), key=lambda m: -len(m.target)):
        if container_path == mount.target or container_path.startswith(mount.target + "/"):
            return Path(mount.source + container_path[len(mount.target) :])
    raise AssertionError(f"{container_path} is not bind-mounted")


def lay_out(service: dict, root: Path) -> Path:
    """Copy every bind mount of `service` to root/<container path>."""
    for mount in bind_mounts(service):
        target = root / mount.target.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        source = Path(mount.source)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
    return root


def test_every_bind_mount_exists_and_is_read_only(services):
    checked = 0
    for name, service in services.items():
        for mount in bind_mounts(service):
            assert Path(mount.source).exists(), f"{name}: {mount.source} does not exist"
            assert mount.read_only, f"{name}: {mount.target} is writable"
            checked += 1
    assert checked >= 6


# --- Prometheus -----------------------------------------------------------------------------


def prometheus_layout(services, tmp_path) -> tuple[Path, Path]:
    """The prometheus container's files under tmp_path, with the token file the entrypoint
    writes; returns (root, config file) with prometheus.yml's paths moved under root."""
    service = services["prometheus"]
    root = lay_out(service, tmp_path / "prometheus")
    flags = dict(arg.split("=", 1) for arg in argv(service["command"]) if "=" in arg)
    config_path = flags["--config.file"]
    token = root / "etc/prometheus/secrets/metrics_token"
    token.parent.mkdir(parents=True)
    token.write_text(DUMMY_ENV["METRICS_TOKEN"])
    config = root / config_path.lstrip("/")
    config.write_text(config.read_text().replace("/etc/prometheus/", f"{root}/etc/prometheus/"))
    return root, config


def test_promtool_check_config_on_the_mounted_files(services, tmp_path):
    promtool = need("promtool")
    root, config = prometheus_layout(services, tmp_path)
    rule_files = sorted((root / "etc/prometheus/rules").glob("*.yml"))
    assert rule_files, "no rule file is mounted"
    result = run([promtool, "check", "config", str(config)])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"SUCCESS: {len(rule_files)} rule files found" in output, output


def test_promtool_check_config_fails_without_the_token_file(services, tmp_path):
    """promtool checks that credentials_file exists: the check above covers the token path."""
    promtool = need("promtool")
    root, config = prometheus_layout(services, tmp_path)
    (root / "etc/prometheus/secrets/metrics_token").unlink()
    result = run([promtool, "check", "config", str(config)])
    assert result.returncode != 0
    assert "metrics_token" in result.stdout + result.stderr


def test_promtool_check_rules_on_the_mounted_rules(services, tmp_path):
    promtool = need("promtool")
    root, _ = prometheus_layout(services, tmp_path)
    for path in sorted((root / "etc/prometheus/rules").glob("*.yml")):
        result = run([promtool, "check", "rules", str(path)])
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout, result.stdout


# --- Alertmanager ---------------------------------------------------------------------------


def render_alertmanager(services, tmp_path, extra_env: dict | None = None):
    """Run the service's entrypoint with --render-only, its environment as compose gives it,
    the template read through the mounts."""
    service = services["alertmanager"]
    entrypoint = argv(service["entrypoint"])
    assert entrypoint[0] in {"/bin/sh", "sh"}, entrypoint
    script = host_path(service, entrypoint[1])
    template = host_path(service, "/etc/alertmanager/alertmanager.yml")
    env = {
        "PATH": os.environ["PATH"],
        **environment(service),
        "ALERTMANAGER_TEMPLATE": str(template),
        "ALERTMANAGER_RUNTIME_DIR": str(tmp_path / "runtime"),
        **(extra_env or {}),
    }
    return run(["sh", str(script), "--render-only"], env=env)


def test_amtool_check_config_on_the_config_the_entrypoint_renders(services, tmp_path):
    result = render_alertmanager(services, tmp_path)
    assert result.returncode == 0, result.stderr
    config = Path(result.stdout.strip())
    checked = run([need("amtool"), "check-config", str(config)])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    # The webhook (a secret) is in a file next to it, not in the configuration.
    assert DUMMY_ENV["ALERT_SLACK_WEBHOOK_URL"] not in config.read_text()
    # The entrypoint adds --config.file itself.
    assert not [a for a in argv(services["alertmanager"]["command"]) if "config.file" in a]


def test_the_alertmanager_entrypoint_stops_on_smtp_user_without_password(services, tmp_path):
    result = render_alertmanager(services, tmp_path, {"ALERT_SMTP_USERNAME": "am"})
    assert result.returncode != 0
    assert "ALERT_SMTP_PASSWORD" in result.stderr


# --- Grafana --------------------------------------------------------------------------------


def grafana_files(services, directory: str, pattern: str) -> list[Path]:
    return sorted(host_path(services["grafana"], directory).rglob(pattern))


def test_grafana_provisioning_parses(services):
    provisioning = grafana_files(services, "/etc/grafana/provisioning", "*.y*ml")
    if not provisioning:
        pytest.skip("no Grafana provisioning file yet")
    for path in provisioning:
        document = yaml.safe_load(path.read_text())
        assert isinstance(document, dict) and document.get("apiVersion") == 1, path


def test_grafana_dashboard_provider_reads_the_mounted_dashboards(services):
    providers = grafana_files(services, "/etc/grafana/provisioning/dashboards", "*.y*ml")
    if not providers:
        pytest.skip("no Grafana dashboard provider yet")
    paths = {
        provider["options"]["path"]
        for path in providers
        for provider in yaml.safe_load(path.read_text()).get("providers", [])
    }
    assert paths == {"/var/lib/grafana/dashboards"}
    for path in grafana_files(services, "/var/lib/grafana/dashboards", "*.json"):
        assert json.loads(path.read_text()).get("uid"), path


def _yaml_strings(node) -> list[str]:
    if isinstance(node, dict):
        return [text for value in node.values() for text in _yaml_strings(value)]
    if isinstance(node, list):
        return [text for item in node for text in _yaml_strings(item)]
    return [node] if isinstance(node, str) else []


def environment_references(services) -> set[str]:
    """$__env{NAME} in the values of the provisioning files and of grafana.ini (not in
    their comments)."""
    texts = [
        text
        for path in grafana_files(services, "/etc/grafana/provisioning", "*.y*ml")
        for text in _yaml_strings(yaml.safe_load(path.read_text()))
    ]
    for mount in bind_mounts(services["grafana"]):
        if mount.target == "/etc/grafana/grafana.ini":
            texts += [
                line
                for line in Path(mount.source).read_text().splitlines()
                if not line.lstrip().startswith((";", "#"))
            ]
    return {name for text in texts for name in ENV_REFERENCE.findall(text)}


def test_every_environment_variable_grafana_files_name_is_set(services):
    """$__env{NAME} expands from the container's environment: each must be set (an unset one
    would silently become empty)."""
    names = environment_references(services)
    if not names:
        pytest.skip("no Grafana file reads the environment yet")
    env = environment(services["grafana"])
    assert {name for name in names if not env.get(name)} == set()


def test_grafana_postgres_datasource_points_at_the_compose_database(services):
    datasources = grafana_files(services, "/etc/grafana/provisioning/datasources", "*.y*ml")
    postgres_env = environment(services["postgres"])
    sources = [
        source
        for path in datasources
        for source in yaml.safe_load(path.read_text()).get("datasources", [])
        if "postgres" in source.get("type", "")
    ]
    if not sources:
        pytest.skip("no PostgreSQL datasource yet")
    grafana_env = environment(services["grafana"])
    for source in sources:
        # By default; GRAFANA_DB_HOST moves the dashboards to a replica.
        assert expand(source["url"], grafana_env) == "postgres:5432", source["url"]
        assert source["jsonData"]["database"] == postgres_env["POSTGRES_DB"]


def test_grafana_datasources_point_at_services_exposing_those_ports(services):
    datasources = grafana_files(services, "/etc/grafana/provisioning/datasources", "*.y*ml")
    grafana_env = environment(services["grafana"])
    urls = [
        expand(source["url"], grafana_env)
        for path in datasources
        for source in yaml.safe_load(path.read_text()).get("datasources", [])
        if source.get("url")
    ]
    if not urls:
        pytest.skip("no Grafana datasource yet")
    for url in urls:
        host, _, port = urlsplit(url if "://" in url else f"tcp://{url}").netloc.partition(":")
        assert host in services, url
        assert int(port) in exposed_ports(services[host]), url
