"""Smoke test of the main job: `make run` on a copy of this checkout, from requirements.txt alone.

`make test` runs it after the suite, so a green run means a newcomer's `make run` works too. Steps:

1. copy the checkout's files (tracked and new, not ignored) to a temporary directory, as a fresh
   clone would have them;
2. build a virtualenv from `requirements.txt` only (never the dev file; cached under
   `.local/smoke/` by the file's hash) and import every app module with it
   (scripts/check_runtime_imports.py);
3. `make run` in the copy on its own port, database and Redis database;
4. wait for /healthz 200; run the README's "Try the API" commands, extracted from README.md with
   the port substituted (they log in as `admin` with the password `make run` kept);
5. log in to the admin as `admin`, create a user through the admin's add-user form, make 30
   authenticated API calls as that user;
6. wait for the beat-driven sync (nobody calls sync_sessions) to bring all 30 into PostgreSQL;
7. stop the way Ctrl-C does and check that every process stopped on its own.

On failure it names the process that died and prints its last lines; the whole output of
`make run` is kept in artifacts/smoke/make-run.log.

    python scripts/smoke_run.py [--keep]    # PostgreSQL and Redis from .local/services.env
"""

import argparse
import contextlib
import hashlib
import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict, deque
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
SMOKE_DB_NAME = "sessionhub_smoke"
SMOKE_REDIS_DB = int(os.environ.get("SMOKE_REDIS_DB", "14"))
API_CALLS = 30
STARTUP_SECONDS = 150
SYNC_SECONDS = 60
STOP_SECONDS = 30
PROCESSES = ("web", "worker", "beat")
LOG = ROOT / "artifacts" / "smoke" / "make-run.log"


class SmokeFailure(Exception):
    pass


def say(message: str) -> None:
    print(f"--> smoke: {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


# --- 1. a fresh copy -----------------------------------------------------------------------------


def copy_checkout(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if not source.is_file():  # deleted in the work tree but still in the index
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


# --- 2. the runtime virtualenv -------------------------------------------------------------------


def runtime_venv() -> Path:
    """A virtualenv with requirements.txt and nothing else, rebuilt when the file changes."""
    digest = hashlib.sha256((ROOT / "requirements.txt").read_bytes()).hexdigest()[:16]
    cache = ROOT / ".local" / "smoke"
    venv = cache / f"venv-{digest}"
    if (venv / ".complete").exists():
        return venv
    if cache.exists():
        for stale in cache.glob("venv-*"):
            shutil.rmtree(stale, ignore_errors=True)
    say(f"building a virtualenv from requirements.txt only ({venv.relative_to(ROOT)})")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    for command in (["install", "-r", str(ROOT / "requirements.txt")], ["check"]):
        result = subprocess.run([*pip, *command], capture_output=True, text=True)
        if result.returncode != 0:
            raise SmokeFailure(f"pip {command[0]} failed:\n{result.stdout}{result.stderr}")
    (venv / ".complete").touch()
    return venv


# --- 3. make run ---------------------------------------------------------------------------------


class RunningJob:
    """`make run` in its own process group, its output kept per process (honcho's prefixes)."""

    LINE = re.compile(r"^\S+ (?P<name>[\w.]+)\s*\| ?(?P<text>.*)$")

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.lines: dict[str, deque[str]] = defaultdict(lambda: deque(maxlen=40))
        LOG.parent.mkdir(parents=True, exist_ok=True)
        self.log = LOG.open("w")
        self.stopping = False
        self.process = subprocess.Popen(
            ["make", "run"],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.log.write(line + "\n")
            self.log.flush()
            match = self.LINE.match(line)
            name = match["name"].split(".")[0] if match else "setup"
            self.lines[name].append(match["text"] if match else line)

    def died(self) -> str | None:
        """The first process that stopped while nobody asked it to, or None."""
        for line in self.lines["system"]:
            stopped = re.match(r"(\w+)\.\d+ stopped", line)
            if stopped and not self.stopping:
                return stopped[1]
        if self.process.poll() is not None and not self.stopping:
            return "make run"
        return None

    def check_alive(self) -> None:
        culprit = self.died()
        if culprit:
            raise SmokeFailure(f"{culprit} died")

    def stop(self) -> None:
        """Ctrl-C: SIGINT to the whole foreground group, as a terminal sends it."""
        self.stopping = True
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
            raise SmokeFailure(f"make run did not stop within {STOP_SECONDS} s of Ctrl-C") from None
        self.reader.join(timeout=5)

    def kill(self) -> None:
        """SIGKILL to make and everything under it (honcho gives each process its own session,
        so killing make's group alone would leave them serving on)."""
        self.stopping = True
        for pid in [self.process.pid, *descendants(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()

    def report(self, culprit: str | None) -> None:
        names = [culprit] if culprit in self.lines else [*PROCESSES, "system", "setup"]
        for name in names:
            tail = list(self.lines.get(name, []))[-25:]
            print(f"\n---- last lines of {name} ----", file=sys.stderr)
            print("\n".join(tail) or "(no output)", file=sys.stderr)
        print(f"\n(the whole output of make run: {LOG.relative_to(ROOT)})", file=sys.stderr)


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children[int(fields[1])].append(int(stat.parent.name))
    found, pending = [], [root]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


# --- 4-6. driving it -----------------------------------------------------------------------------


class Browser:
    """A cookie-keeping HTTP client, enough for the admin's login and forms (CSRF included)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def request(self, path: str, data: dict | None = None, headers: dict | None = None):
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, headers=headers or {})
        if body is not None:
            request.add_header("Referer", self.base + path)
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, response.geturl(), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.geturl(), error.read().decode(errors="replace")

    def csrf(self) -> str:
        return next(cookie.value for cookie in self.cookies if cookie.name == "csrftoken")

    def post_form(self, path: str, fields: dict):
        self.request(path)
        return self.request(path, {"csrfmiddlewaretoken": self.csrf(), **fields})


def api(base: str, method: str, path: str, body=None, token: str | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def wait_for_health(base: str, job: RunningJob) -> float:
    started = time.monotonic()
    while time.monotonic() - started < STARTUP_SECONDS:
        job.check_alive()
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise SmokeFailure(f"/healthz did not answer 200 within {STARTUP_SECONDS} s")


def readme_api_commands(port: int) -> str:
    """The README's "Try the API" block, literally, pointed at the smoke's port."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"Try the API\b.*?```bash\n(.*?)```", readme, re.S)
    if not match:
        raise SmokeFailure('README.md has no ```bash block after "Try the API:"')
    return re.sub(r"(localhost|127\.0\.0\.1):8000", rf"\g<1>:{port}", match[1])


def run_readme_commands(workdir: Path, port: int, env: dict[str, str]) -> None:
    script = readme_api_commands(port)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout.strip().splitlines()
    if result.returncode != 0 or len(output) < 2:
        raise SmokeFailure(
            "the README's 'Try the API' commands failed "
            f"(exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    me, sessions = json.loads(output[-2]), json.loads(output[-1])
    if me.get("user", {}).get("username") != "admin":
        raise SmokeFailure(f"README: /api/me/ did not answer for admin: {output[-2]}")
    if not (sessions.get("results") if isinstance(sessions, dict) else sessions):
        raise SmokeFailure(f"README: /api/sessions/ listed no session: {output[-1]}")


def create_user_in_admin(base: str, admin_password: str, username: str, password: str) -> None:
    browser = Browser(base)
    status, url, _ = browser.post_form(
        "/admin/login/?next=/admin/", {"username": "admin", "password": admin_password}
    )
    if status != 200 or urlsplit(url).path != "/admin/":
        raise SmokeFailure(f"admin login failed: {status} at {url}")
    status, _, page = browser.request("/admin/")
    if status != 200 or "<title>Overview | sessionhub admin</title>" not in page:
        raise SmokeFailure(f"the admin index answered {status} without its overview")
    status, url, page = browser.post_form(
        "/admin/accounts/user/add/",
        {
            "username": username,
            "usable_password": "true",
            "password1": password,
            "password2": password,
            "_save": "Save",
        },
    )
    if status != 200 or not re.search(r"/admin/accounts/user/\d+/change/", url):
        errors = re.findall(r'<ul class="errorlist[^"]*">(.*?)</ul>', page, re.S)
        raise SmokeFailure(f"creating a user in the admin failed ({status} at {url}): {errors}")


def make_api_calls(base: str, username: str, password: str) -> None:
    status, tokens = api(
        base, "POST", "/api/auth/token/", {"username": username, "password": password}
    )
    if status != 200:
        raise SmokeFailure(f"login of the new user answered {status}: {tokens}")
    for number in range(API_CALLS):
        status, body = api(base, "GET", "/api/me/", token=tokens["access"])
        if status != 200:
            raise SmokeFailure(f"API call {number + 1} answered {status}: {body}")


def synced_calls(database_url: str, username: str) -> int:
    import psycopg

    with psycopg.connect(database_url, connect_timeout=3) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(s.api_call_count), 0) FROM audit_session s "
            "JOIN accounts_user u ON u.id = s.user_id WHERE u.username = %s",
            (username,),
        ).fetchone()
    return int(row[0])


def wait_for_sync(database_url: str, username: str, job: RunningJob) -> float:
    started = time.monotonic()
    seen = 0
    while time.monotonic() - started < SYNC_SECONDS:
        job.check_alive()
        try:
            seen = synced_calls(database_url, username)
        except Exception:  # the table may not be there yet; keep asking
            seen = 0
        if seen == API_CALLS:
            return time.monotonic() - started
        if seen > API_CALLS:
            raise SmokeFailure(f"PostgreSQL holds {seen} calls for {username}, {API_CALLS} made")
        time.sleep(1)
    raise SmokeFailure(
        f"the beat-driven sync brought {seen} of {API_CALLS} calls in {SYNC_SECONDS} s"
    )


# --- the run -------------------------------------------------------------------------------------


def services() -> tuple[str, str]:
    """This checkout's PostgreSQL and Redis (as setup wrote them), with the smoke's own names."""
    values = dict(os.environ)
    env_file = ROOT / ".local" / "services.env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            values.setdefault(name.strip(), value.strip().strip("'\""))
    database = values.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/sessionhub")
    redis = values.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    return with_path(database, f"/{SMOKE_DB_NAME}"), with_path(redis, f"/{SMOKE_REDIS_DB}")


def reset_stores(database_url: str, redis_url: str) -> None:
    import psycopg
    import redis

    admin_url = with_path(database_url, "/postgres")
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{SMOKE_DB_NAME}" WITH (FORCE)')
    redis.Redis.from_url(redis_url).flushdb()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the copy for inspection")
    args = parser.parse_args()
    started = time.monotonic()
    database_url, redis_url = services()
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="sessionhub-smoke-"))
    job = None
    culprit = None
    try:
        say(f"copying the checkout to {workdir}")
        copy_checkout(workdir)
        venv = runtime_venv()
        (workdir / ".venv").symlink_to(venv)
        say("importing every app module with the runtime requirements")
        subprocess.run(
            [str(venv / "bin" / "python"), "scripts/check_runtime_imports.py"],
            cwd=workdir,
            check=True,
        )
        reset_stores(database_url, redis_url)
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DJANGO_", "VIRTUAL_ENV", "PYTEST", "MAKE", "MFLAGS"))
        }
        env.update(PORT=str(port), DATABASE_URL=database_url, REDIS_URL=redis_url)
        env["PATH"] = os.pathsep.join(
            p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p
        )
        say(f"make run on port {port}, database {SMOKE_DB_NAME}, Redis db {SMOKE_REDIS_DB}")
        job = RunningJob(workdir, env)
        seconds = wait_for_health(f"http://127.0.0.1:{port}", job)
        say(f"/healthz 200 after {seconds:.1f} s")
        base = f"http://127.0.0.1:{port}"
        run_readme_commands(workdir, port, env)
        say("the README's 'Try the API' commands work as written")
        admin_password = (workdir / ".local" / "admin-password").read_text().strip()
        username, password = "smoke-user", f"smoke-{os.urandom(8).hex()}"
        create_user_in_admin(base, admin_password, username, password)
        say("admin: logged in, index answered, user created through the add-user form")
        make_api_calls(base, username, password)
        say(f"{API_CALLS} authenticated API calls made")
        seconds = wait_for_sync(database_url, username, job)
        say(f"the beat-driven sync brought all {API_CALLS} calls to PostgreSQL in {seconds:.1f} s")
        job.check_alive()
        job.stop()
        for name in PROCESSES:
            stopped = [line for line in job.lines["system"] if line.startswith(f"{name}.")]
            if not any("stopped" in line for line in stopped):
                raise SmokeFailure(f"{name} did not report stopping after Ctrl-C")
        say(f"stopped cleanly; the smoke took {time.monotonic() - started:.0f} s")
        return 0
    except SmokeFailure as failure:
        culprit = job.died() if job else None
        print(f"\nsmoke: FAILED: {failure}", file=sys.stderr)
        if job:
            job.report(culprit)
        return 1
    except subprocess.CalledProcessError as error:
        print(f"\nsmoke: FAILED: {' '.join(map(str, error.cmd))} exited {error.returncode}")
        return 1
    finally:
        if job and job.process.poll() is None:
            job.kill()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
            try:
                reset_stores(database_url, redis_url)
            except Exception as error:  # clean-up is best effort
                print(f"smoke: could not drop the smoke's stores: {error}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
