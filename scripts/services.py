"""Make sure PostgreSQL and Redis are reachable, starting private instances when they are not.

Used by `make run` and `make test` (through scripts/setup.sh). Rules:

* DATABASE_URL / REDIS_URL set in the environment: that server must answer, or we stop and say so.
* Not set: try the standard local servers (127.0.0.1:5432, 127.0.0.1:6379). When one does not
  answer, start a private instance from the installed binaries under `.local/` on a
  non-default port, and say so.

The chosen URLs are written to `.local/services.env` for the Makefile to source. Running it
again is quick and changes nothing that is already up.
"""

import argparse
import getpass
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".local"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/sessionhub"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
PRIVATE_PG_PORT = 54329
PRIVATE_REDIS_PORT = 63799


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def fail(message: str) -> None:
    print(f"\nsetup: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(check, what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    fail(f"{what} did not come up within {seconds:.0f} s.")


# --- PostgreSQL --------------------------------------------------------------------------------


def pg_answers(url: str) -> bool:
    import psycopg

    parts = urlsplit(url)
    admin_url = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    try:
        with psycopg.connect(admin_url, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def pg_binaries() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def run_as_postgres_user(cmd: list[str]) -> None:
    """PostgreSQL refuses to run as root; as root we hand the private instance to `postgres`."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def start_private_postgres() -> str:
    bindir = pg_binaries()
    if bindir is None:
        install_or_explain(["postgresql"], "PostgreSQL")
        bindir = pg_binaries()
    data = LOCAL / "postgres"
    run_dir = LOCAL / "postgres-run"
    url = f"postgres://postgres@127.0.0.1:{PRIVATE_PG_PORT}/sessionhub"
    if port_open("127.0.0.1", PRIVATE_PG_PORT):
        return url
    say(f"No PostgreSQL answers; starting a private one on 127.0.0.1:{PRIVATE_PG_PORT} in {data}")
    run_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            fail("running as root, but there is no 'postgres' system user to run PostgreSQL as.")
        shutil.chown(LOCAL, "postgres")
        shutil.chown(run_dir, "postgres")
    if not (data / "PG_VERSION").exists():
        run_as_postgres_user(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ]
        )
    options = f"-p {PRIVATE_PG_PORT} -k {run_dir} -c listen_addresses=127.0.0.1"
    run_as_postgres_user(
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(LOCAL / "postgres.log"),
            "-o",
            options,
            "-w",
            "start",
        ]
    )
    wait_for(lambda: pg_answers(url), "The private PostgreSQL")
    return url


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "sessionhub"
    admin_url = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            say(f"Creating database {name}")
            conn.execute(f'CREATE DATABASE "{name}"')


# --- Redis -------------------------------------------------------------------------------------


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False


def start_private_redis() -> str:
    url = f"redis://127.0.0.1:{PRIVATE_REDIS_PORT}/0"
    if redis_answers(url):
        return url
    binary = shutil.which("redis-server")
    if binary is None:
        install_or_explain(["redis-server"], "Redis")
        binary = shutil.which("redis-server")
    data = LOCAL / "redis"
    data.mkdir(parents=True, exist_ok=True)
    say(f"No Redis answers; starting a private one on 127.0.0.1:{PRIVATE_REDIS_PORT} in {data}")
    subprocess.run(
        [
            binary,
            "--port",
            str(PRIVATE_REDIS_PORT),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "yes",
            "--dir",
            str(data),
            "--logfile",
            str(LOCAL / "redis.log"),
            "--pidfile",
            str(LOCAL / "redis.pid"),
            "--appendonly",
            "yes",
            "--save",
            "",
        ],
        check=True,
    )
    wait_for(lambda: redis_answers(url), "The private Redis")
    return url


# --- Debian packages ---------------------------------------------------------------------------


def install_or_explain(packages: list[str], what: str) -> None:
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say(f"Installing {what} (apt-get install {' '.join(packages)})")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)
        return
    fail(
        f"{what} is not installed and this user ({getpass.getuser()}) cannot install it.\n"
        f"Install it with:  sudo apt-get install -y {' '.join(packages)}\n"
        "or point the corresponding *_URL environment variable at a running server."
    )


# --- main --------------------------------------------------------------------------------------


def resolve(name: str, default: str, answers, start_private) -> str:
    explicit = os.environ.get(name)
    if explicit:
        if not answers(explicit):
            fail(f"{name} is set to a server that does not answer: {redact(explicit)}")
        return explicit
    if answers(default):
        return default
    return start_private()


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    LOCAL.mkdir(exist_ok=True)
    database_url = resolve("DATABASE_URL", DEFAULT_DATABASE_URL, pg_answers, start_private_postgres)
    ensure_database(database_url)
    redis_url = resolve("REDIS_URL", DEFAULT_REDIS_URL, redis_answers, start_private_redis)
    (LOCAL / "services.env").write_text(
        f"export DATABASE_URL='{database_url}'\nexport REDIS_URL='{redis_url}'\n"
    )
    say(f"PostgreSQL: {redact(database_url)}")
    say(f"Redis:      {redact(redis_url)}")


if __name__ == "__main__":
    main()
