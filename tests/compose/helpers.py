"""What the compose tests share: the deployment files, a dummy .env, docker-compose itself,
and the build context the Dockerfile sees."""

import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.monitoring.helpers import need, run

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
CLUSTER_COMPOSE_FILE = ROOT / "docker-compose.cluster.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROCFILE = ROOT / "Procfile"
ENV_EXAMPLE = ROOT / ".env.example"

PRODUCTION_SETTINGS = "sessionhub.settings.production"
# The services that run the project's image, and the Procfile process each one runs.
PROCFILE_SERVICES = {"web": "app", "worker": "worker", "beat": "beat"}
DJANGO_SERVICES = {"app", "worker", "beat", "migrate"}

# A value for every variable the compose file requires: all dummies, none a real secret.
DUMMY_ENV = {
    "SECRET_KEY": "dummy-secret-key-for-compose-tests-0000000000000000",
    "JWT_SIGNING_KEY": "dummy-jwt-signing-key-for-compose-tests-000000",
    "ALLOWED_HOSTS": "sessionhub.example.org",
    "METRICS_TOKEN": "dummy-metrics-token",
    "POSTGRES_PASSWORD": "dummy-postgres-password",
    "GRAFANA_ADMIN_PASSWORD": "dummy-grafana-admin-password",
    "GRAFANA_DB_PASSWORD": "dummy-grafana-db-password",
    "ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.invalid/services/T000/B000/dummy",
    "ALERT_SLACK_CHANNEL": "#sessionhub-alerts",
    "ALERT_EMAIL_TO": "oncall@example.org",
    "ALERT_EMAIL_FROM": "alertmanager@example.org",
    "ALERT_SMTP_SMARTHOST": "smtp.example.org:587",
}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; not $${...}.
REFERENCE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def compose_text() -> str:
    return COMPOSE_FILE.read_text()


def raw_compose() -> dict:
    """The compose file as YAML (anchors and merge keys resolved, variables not)."""
    return yaml.safe_load(compose_text())


def _strings(node) -> list[str]:
    if isinstance(node, dict):
        return [text for key, value in node.items() for text in (str(key), *_strings(value))]
    if isinstance(node, list):
        return [text for item in node for text in _strings(item)]
    return [] if node is None else [str(node)]


def referenced_variables() -> dict[str, set[str]]:
    """Every variable the compose file interpolates (comments aside) -> the operators used
    with it ('' = none)."""
    found: dict[str, set[str]] = {}
    for text in _strings(raw_compose()):
        for match in REFERENCE.finditer(text):
            found.setdefault(match.group(1), set()).add(match.group(2) or "")
    return found


def required_variables() -> set[str]:
    return {name for name, ops in referenced_variables().items() if ops & {":?", "?"}}


def write_env_file(path: Path, env: dict[str, str]) -> Path:
    path.write_text("".join(f"{name}={value}\n" for name, value in env.items()))
    return path


def docker_compose(
    directory: Path, env: dict[str, str], *args: str, files: tuple[Path, ...] = (COMPOSE_FILE,)
):
    """`docker-compose --env-file <env> -f docker-compose.yml ARGS` (or `-f` each of `files`:
    an override after the base) with no other environment (the shell's variables would take
    precedence over the env file)."""
    env_file = write_env_file(directory / "compose.env", env)
    command = [need("docker-compose"), "--env-file", str(env_file)]
    for file in files:
        command += ["-f", str(file)]
    isolated = {"PATH": os.environ["PATH"], "HOME": str(directory)}
    return run([*command, *args], env=isolated, cwd=directory)


def resolved_compose(directory: Path, env: dict[str, str] | None = None) -> dict:
    """`docker-compose config` of the file: interpolated with `env` (DUMMY_ENV) and normalised."""
    result = docker_compose(directory, DUMMY_ENV if env is None else env, "config")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def unescape(value: str) -> str:
    """A compose string as the container sees it ($$ is compose's escaped $)."""
    return value.replace("$$", "$")


# --- the Docker build context ---------------------------------------------------------------


def _dockerignore_patterns() -> list[tuple[bool, re.Pattern]]:
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        patterns.append((negate, re.compile(regex + r"\Z")))
    return patterns


def dockerignored(relative: str) -> bool:
    """Whether Docker leaves `relative` (a path under the repository) out of the build context:
    the last matching pattern decides, and a pattern matching a directory covers its content."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negate, pattern in _dockerignore_patterns():
        if any(pattern.match(prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


def build_context_files() -> list[str]:
    """The files `COPY . .` brings into the image, relative to the repository."""
    files = []
    for directory, subdirectories, names in os.walk(ROOT):
        base = Path(directory).relative_to(ROOT).as_posix()
        prefix = "" if base == "." else f"{base}/"
        # Docker would still look inside for a later "!" pattern; this file has none that needs it.
        subdirectories[:] = [d for d in subdirectories if not dockerignored(prefix + d)]
        files += [prefix + name for name in names if not dockerignored(prefix + name)]
    return sorted(files)


def copy_build_context(destination: Path) -> Path:
    """The build context, copied to `destination`."""
    for relative in build_context_files():
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
    return destination


# --- reading services of the resolved compose file ------------------------------------------


@dataclass(frozen=True)
class Mount:
    kind: str  # "bind" or "volume"
    source: str
    target: str
    read_only: bool


def mounts(service: dict) -> list[Mount]:
    found = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            parts = volume.split(":")
            source, target = parts[0], parts[1]
            read_only = len(parts) > 2 and "ro" in parts[2].split(",")
            kind = "bind" if source.startswith(("/", ".")) else "volume"
        else:
            source, target = volume.get("source", ""), volume["target"]
            read_only = bool(volume.get("read_only"))
            kind = volume.get("type", "volume")
        found.append(Mount(kind, source, target, read_only))
    return found


def tmpfs_paths(service: dict) -> list[str]:
    entries = service.get("tmpfs", [])
    entries = [entries] if isinstance(entries, str) else entries
    return [entry.split(":")[0] for entry in entries]


def under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


# What Docker binds a published port to when no address is given.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104


@dataclass(frozen=True)
class Port:
    host_ip: str
    published: str
    target: int


def published_ports(service: dict) -> list[Port]:
    found = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            found.append(
                Port(
                    port.get("host_ip", ALL_INTERFACES),
                    str(port.get("published", "")),
                    port["target"],
                )
            )
            continue
        spec = str(port).split("/")[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 3:
            found.append(Port(parts[0] or ALL_INTERFACES, parts[1], int(parts[2])))
        elif len(parts) == 2:
            found.append(Port(ALL_INTERFACES, parts[0], int(parts[1])))
        else:
            found.append(Port(ALL_INTERFACES, "", int(parts[0])))
    return found


def exposed_ports(service: dict) -> set[int]:
    """Container ports other services may reach: `expose` and the targets of `ports`."""
    exposed = {int(str(port).split("/")[0]) for port in service.get("expose", [])}
    return exposed | {port.target for port in published_ports(service)}


def environment(service: dict) -> dict[str, str]:
    """The variables the container gets (a null entry is passed only when set: here, never)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(entry.split("=", 1) if "=" in entry else (entry, None) for entry in env)
    return {name: str(value) for name, value in env.items() if value is not None}


def argv(value) -> list[str]:
    """A compose command or entrypoint as the container's argument list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [unescape(word) for word in shlex.split(value)]
    return [unescape(str(word)) for word in value]


def healthcheck_enabled(service: dict) -> bool:
    check = service.get("healthcheck")
    if not check or check.get("disable"):
        return False
    return check.get("test") not in (["NONE"], "NONE", None)


# --- the Dockerfile -------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    arguments: str


def dockerfile_instructions(text: str | None = None) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    text = DOCKERFILE.read_text() if text is None else text
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].strip() + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, arguments = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(stage, keyword, arguments.strip()))
    return instructions


def exec_form(arguments: str) -> list[str] | None:
    """The JSON (exec) form of CMD/ENTRYPOINT/HEALTHCHECK CMD, or None for the shell form."""
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None
