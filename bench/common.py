"""Helpers shared by the benchmarks: Django set-up, gunicorn, wrk, CPU accounting, markdown.

Everything here is blocking and simple on purpose. The machine is shared by the server under
test, wrk, Redis and PostgreSQL, and possibly by processes foreign to the benchmark:
`wait_for_quiet()` waits for those to leave the CPU and `CpuMeter` tells afterwards how much
CPU each party took, so a benchmark can discard a disturbed measurement.
"""

import datetime
import functools
import os
import platform
import re
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import testing

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
RESULTS_DIR = BENCH_DIR / "results"
SETTINGS_MODULE = "bench.settings"

WORKERS = 2
WRK_THREADS = 2
WRK_CONNECTIONS = 8
WRK_TIMEOUT = "10s"
WRK_SCRIPT = BENCH_DIR / "wrk" / "tokens.lua"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rel(path: Path) -> str:
    """A path as the reader would type it from the project's root."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# --- Django, the bench database and the bench Redis --------------------------------------------


@functools.cache
def django_setup() -> None:
    """Configure Django with bench.settings, create `sessionhub_bench` if missing, migrate."""
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
    import django
    from django.conf import settings

    database = settings.DATABASES["default"]
    if not database["NAME"].startswith("sessionhub_bench"):
        raise RuntimeError(f"bench settings point at database {database['NAME']!r}")
    _create_database(database)
    django.setup()

    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    redis_client()  # checks the database number


def _create_database(database: dict) -> None:
    import psycopg
    from psycopg import sql

    params = {
        "host": database.get("HOST") or "127.0.0.1",
        "port": database.get("PORT") or 5432,
        "user": database.get("USER") or "postgres",
        "password": database.get("PASSWORD") or None,
        "dbname": "postgres",
        "connect_timeout": 5,
    }
    with psycopg.connect(**params, autocommit=True) as conn:
        found = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database["NAME"],)
        ).fetchone()
        if not found:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database["NAME"])))


def bench_users(prefix: str, count: int) -> list[int]:
    """The ids of `count` users named `<prefix>-<n>` in the bench database, created once (a
    fast hasher's password) and reused by later runs."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    user_model = get_user_model()
    named = user_model.objects.filter(username__startswith=f"{prefix}-")
    have = named.count()
    if have < count:
        password = make_password("x")
        user_model.objects.bulk_create(
            [user_model(username=f"{prefix}-{n}", password=password) for n in range(have, count)],
            batch_size=5000,
        )
    return list(named.order_by("pk").values_list("pk", flat=True))


def redis_client():
    """The project's Redis client, as configured by bench.settings (database 12, or
    $BENCH_REDIS_DB)."""
    from django.conf import settings

    from core.redis import get_redis

    client = get_redis()
    db = client.connection_pool.connection_kwargs.get("db", 0)
    if db != settings.BENCH_REDIS_DB:
        raise RuntimeError(f"bench Redis must be database {settings.BENCH_REDIS_DB}, not {db}")
    return client


def redis_flush() -> None:
    """Empty the bench's Redis database (12 or $BENCH_REDIS_DB): FLUSHDB on that one only.
    ASYNC: the keys are gone at once and freed in the background (1M session hashes took
    longer than the client's socket timeout on a busy machine)."""
    redis_client().flushdb(asynchronous=True)


# --- machine description -----------------------------------------------------------------------


def _first_line(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _ram() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "?"


def machine_description() -> str:
    """Markdown bullet list: hardware, OS, versions and the server settings that matter."""
    django_setup()
    import django
    import gunicorn
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, setting, unit FROM pg_settings WHERE name IN ('server_version', "
            "'fsync', 'synchronous_commit', 'wal_sync_method', 'autovacuum', 'shared_buffers')"
        )
        pg = {name: (setting, unit) for name, setting, unit in cursor.fetchall()}
    connection.close()
    shared = pg.get("shared_buffers", ("?", None))
    shared_buffers = (
        f"{int(shared[0]) * 8 // 1024} MB" if shared[1] == "8kB" else f"{shared[0]}{shared[1]}"
    )
    info = redis_client().info()
    try:
        persistence = redis_client().config_get("save") | redis_client().config_get("appendonly")
        redis_persistence = (
            f"save '{persistence.get('save', '?')}', appendonly {persistence.get('appendonly')}"
        )
    except Exception:  # CONFIG may be disabled on a managed Redis
        redis_persistence = "unknown"
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    lines = [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} cores",
        f"- RAM: {_ram()}",
        f"- Kernel: {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, Django {django.get_version()}, "
        f"gunicorn {gunicorn.__version__} ({WORKERS} sync workers)",
        f"- PostgreSQL {pg.get('server_version', ('?',))[0]} (fsync {pg.get('fsync', ('?',))[0]}, "
        f"synchronous_commit {pg.get('synchronous_commit', ('?',))[0]}, "
        f"wal_sync_method {pg.get('wal_sync_method', ('?',))[0]}, "
        f"autovacuum {pg.get('autovacuum', ('?',))[0]}, shared_buffers {shared_buffers})",
        f"- Redis {info.get('redis_version', '?')} ({redis_persistence})",
        f"- {_first_line(['wrk', '--version'])}",
        f"- Load average when the run started: {load}",
    ]
    return "\n".join(lines)


# --- gunicorn ----------------------------------------------------------------------------------


class Gunicorn(testing.Gunicorn):
    """The project's WSGI app under gunicorn (bench/gunicorn_conf.py), 2 sync workers."""

    startup_timeout = 60.0

    def __init__(self, name: str) -> None:
        self.name = name
        self.error_log = RESULTS_DIR / f"gunicorn-{name}.log"
        self.metrics_dir = RESULTS_DIR / f"prometheus-{name}"
        # Its output goes to the error log; the runner's terminal stays readable.
        super().__init__(config="python:bench.gunicorn_conf", env={}, stdout=None, stderr=None)
        self.env = {
            "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
            "BENCH_BIND": f"127.0.0.1:{self.port}",
            "BENCH_ERROR_LOG": str(self.error_log),
            "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
        }
        self._ready_path = "/"

    @property
    def base_url(self) -> str:
        return self.url

    def start(self, ready_path: str) -> None:  # type: ignore[override]
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        self._ready_path = ready_path
        super().start()

    def ready(self) -> bool:
        return len(self.worker_pids()) == WORKERS and self.answers(self._ready_path)

    def failure(self) -> str:
        return f"see {rel(self.error_log)}"


# --- wrk ---------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    command: str
    output: str
    requests: int  # responses read before wrk stopped
    sent: int  # requests written
    non_2xx_3xx: int
    socket_errors: int
    duration_s: float
    rps: float
    mean_us: float
    p50_us: float
    p99_us: float
    printed_rps: float  # wrk's own "Requests/sec" line, as a cross-check
    printed_p50_us: float
    printed_p99_us: float
    quantiles: list[float]  # latency at the 0.05th, 0.15th, ... 99.95th percentile

    @property
    def ok(self) -> int:
        """Responses with a 2xx (or 3xx) status wrk saw."""
        return self.requests - self.non_2xx_3xx


@dataclass
class Measurement:
    """Several wrk runs against the same server, taken as one: their times and counts add up.

    Percentiles are merged from each run's 1,000 quantiles, weighted by its request count.
    """

    runs: list[WrkResult]

    @property
    def requests(self) -> int:
        return sum(run.requests for run in self.runs)

    @property
    def ok(self) -> int:
        return sum(run.ok for run in self.runs)

    @property
    def non_2xx_3xx(self) -> int:
        return sum(run.non_2xx_3xx for run in self.runs)

    @property
    def socket_errors(self) -> int:
        return sum(run.socket_errors for run in self.runs)

    @property
    def duration_s(self) -> float:
        return sum(run.duration_s for run in self.runs)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def mean_us(self) -> float:
        return sum(run.mean_us * run.requests for run in self.runs) / max(self.requests, 1)

    def percentile_us(self, percent: float) -> float:
        if len(self.runs) == 1:
            run = self.runs[0]
            return {50: run.p50_us, 99: run.p99_us}.get(percent) or self._merged(percent)
        return self._merged(percent)

    def _merged(self, percent: float) -> float:
        points = sorted(
            (value, run.requests / len(run.quantiles))
            for run in self.runs
            for value in run.quantiles
        )
        target = self.requests * percent / 100
        seen = 0.0
        for value, weight in points:
            seen += weight
            if seen >= target:
                return value
        return points[-1][0] if points else float("nan")

    @property
    def p50_us(self) -> float:
        return self.percentile_us(50)

    @property
    def p99_us(self) -> float:
        return self.percentile_us(99)


_UNITS_US = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0, "m": 60_000_000.0}


def _latency_us(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"cannot read the latency {text!r}")
    return float(match.group(1)) * _UNITS_US[match.group(2)]


def parse_wrk(output: str) -> dict:
    """The figures of wrk's report (with --latency) and of the script's summary line."""
    summary = re.search(r"^bench-summary (.*)$", output, re.MULTILINE)
    if not summary:
        raise ValueError("wrk printed no bench-summary line:\n" + output)
    fields = dict(part.split("=", 1) for part in summary.group(1).split())
    quantiles = re.search(r"^bench-quantiles (.*)$", output, re.MULTILINE)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", output, re.MULTILINE))
    return {
        "requests": int(fields["requests"]),
        "sent": int(fields["sent"]),
        "non_2xx_3xx": int(fields["non2xx3xx"]),
        "socket_errors": sum(int(fields[k]) for k in ("connect", "read", "write", "timeout")),
        "duration_s": int(fields["duration_us"]) / 1e6,
        "mean_us": float(fields["mean_us"]),
        "p50_us": float(fields["p50_us"]),
        "p99_us": float(fields["p99_us"]),
        "printed_rps": float(rps.group(1)) if rps else float("nan"),
        "printed_p50_us": _latency_us(percentiles["50"]) if "50" in percentiles else float("nan"),
        "printed_p99_us": _latency_us(percentiles["99"]) if "99" in percentiles else float("nan"),
        "quantiles": [float(v) for v in quantiles.group(1).split()] if quantiles else [],
    }


def wrk_command(url: str, tokens_file: Path, duration: float) -> list[str]:
    return [
        "wrk",
        f"-t{WRK_THREADS}",
        f"-c{WRK_CONNECTIONS}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        WRK_TIMEOUT,
        "-s",
        rel(WRK_SCRIPT),
        url,
        "--",
        str(tokens_file),
    ]


def run_wrk(url: str, tokens_file: Path, duration: float) -> WrkResult:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: sudo apt-get install -y wrk")
    command = wrk_command(url, tokens_file, duration)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=duration + 120)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    figures = parse_wrk(done.stdout)
    return WrkResult(
        command=" ".join(command),
        output=done.stdout,
        rps=figures["requests"] / figures["duration_s"],
        **figures,
    )


# --- CPU accounting ----------------------------------------------------------------------------


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of a live process, in seconds (all its threads); 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _machine_cpu_s() -> tuple[float, float, float]:
    """(busy, idle, interrupts) CPU seconds of the whole machine since boot, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    busy = sum(values[:8]) - idle  # user nice system idle iowait irq softirq steal
    interrupts = values[5] + values[6]  # irq + softirq (loopback networking runs there)
    return busy / CLOCK_TICKS, idle / CLOCK_TICKS, interrupts / CLOCK_TICKS


PF_KTHREAD = 0x00200000


def _kernel_threads_cpu_s() -> float:
    """CPU of the kernel's own threads (I/O flushers, ksoftirqd, ...), which never exit."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[6]) & PF_KTHREAD:
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def _redis_cpu_s() -> float:
    info = redis_client().info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def postgres_pids() -> list[int]:
    """The bench database's backends and PostgreSQL's own background processes (local server).

    Call it once the workers have connected (after the warm-up): bench.settings keeps their
    connections open for the whole case, so the same backends serve the measured run.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND "
            "(datname = current_database() OR backend_type IN ('checkpointer', "
            "'background writer', 'walwriter', 'autovacuum launcher'))"
        )
        pids = [pid for (pid,) in cursor.fetchall()]
    connection.close()
    return pids


@dataclass
class CpuSnapshot:
    busy: float
    idle: float
    kernel: float
    gunicorn: float
    redis: float
    postgres: float
    children: float


@dataclass
class CpuUse:
    """CPU seconds spent during a measurement, split by who spent them."""

    wall_s: float
    busy: float
    idle: float
    gunicorn: float  # master and workers (all threads: the tracker's flusher included)
    redis: float  # redis-server (the whole server: other clients' commands included)
    postgres: float  # the bench database's backends and PostgreSQL's background processes
    wrk: float
    kernel: float  # interrupts (loopback networking) and the kernel's threads (disk flushes)
    other: float  # the rest: processes foreign to the benchmark

    def per_request_us(self, requests: int) -> dict[str, float]:
        n = max(requests, 1)
        names = ("gunicorn", "redis", "postgres", "wrk", "kernel", "other")
        return {name: getattr(self, name) / n * 1e6 for name in names}

    @classmethod
    def total(cls, uses: list["CpuUse"]) -> "CpuUse":
        names = ("wall_s", "busy", "idle", "gunicorn", "redis", "postgres", "wrk", "kernel")
        sums = {name: sum(getattr(use, name) for use in uses) for name in (*names, "other")}
        return cls(**sums)

    @property
    def idle_share(self) -> float:
        total = self.busy + self.idle
        return self.idle / total if total else 0.0

    @property
    def other_share(self) -> float:
        """`other` as a share of the machine's capacity (all cores) over the run."""
        total = self.busy + self.idle
        return self.other / total if total else 0.0


class CpuMeter:
    """CPU use of the machine and of the benchmark's processes between two `snapshot()`s."""

    def __init__(self, gunicorn_pids: list[int], postgres_pids: list[int]) -> None:
        self.gunicorn_pids = gunicorn_pids
        self.postgres_pids = postgres_pids

    def snapshot(self) -> CpuSnapshot:
        busy, idle, interrupts = _machine_cpu_s()
        return CpuSnapshot(
            busy=busy,
            idle=idle,
            kernel=interrupts + _kernel_threads_cpu_s(),
            gunicorn=sum(_proc_cpu_s(pid) for pid in self.gunicorn_pids),
            redis=_redis_cpu_s(),
            postgres=sum(_proc_cpu_s(pid) for pid in self.postgres_pids),
            children=_children_cpu_s(),
        )

    @staticmethod
    def use(before: CpuSnapshot, after: CpuSnapshot, wall_s: float) -> CpuUse:
        """The difference of two snapshots; wrk must be the only child reaped in between."""
        spent = {
            name: getattr(after, name) - getattr(before, name)
            for name in ("busy", "idle", "kernel", "gunicorn", "redis", "postgres", "children")
        }
        ours = sum(spent[name] for name in ("kernel", "gunicorn", "redis", "postgres", "children"))
        return CpuUse(
            wall_s=wall_s,
            busy=spent["busy"],
            idle=spent["idle"],
            gunicorn=spent["gunicorn"],
            redis=spent["redis"],
            postgres=spent["postgres"],
            wrk=spent["children"],
            kernel=spent["kernel"],
            other=max(spent["busy"] - ours, 0.0),
        )


def machine_busy_share(seconds: float = 2.0) -> float:
    """The share of all cores busy over the next `seconds`."""
    busy0, idle0, _ = _machine_cpu_s()
    time.sleep(seconds)
    busy1, idle1, _ = _machine_cpu_s()
    total = (busy1 - busy0) + (idle1 - idle0)
    return (busy1 - busy0) / total if total else 0.0


def wait_for_quiet(threshold: float = 0.10, patience: float = 600.0) -> float:
    """Wait (up to `patience` s) until the machine has been idle enough for 2 s; returns the wait.

    Other processes on the machine (a test suite, a build) take CPU from the server under test
    and would be charged to whichever design happened to run at the time.
    """
    started = time.monotonic()
    announced = False
    quiet = 0
    while quiet < 2:
        quiet = quiet + 1 if machine_busy_share(1.0) <= threshold else 0
        if quiet or time.monotonic() - started > patience:
            if not quiet:
                print("    the machine is still busy; measuring anyway", flush=True)
                break
            continue
        if not announced:
            print(
                "    waiting for the machine to be idle (other processes are running)", flush=True
            )
            announced = True
    return time.monotonic() - started


# --- markdown ----------------------------------------------------------------------------------


def section(title: str, module, *lines: str) -> str:
    """A benchmark's report section: its title, its module docstring after the first paragraph
    (what it measures), the command that reruns it alone, then `lines`."""
    name = module.__name__.rsplit(".", 1)[-1].removeprefix("bench_")
    about = module.__doc__.split("\n\n", 1)[1].strip()
    command = f"python -m bench.runner --only {name}"
    return "\n".join([f"## {title}", "", about, "", "```", command, "```", "", *lines])


def md_table(headers: list[str], rows: list[list[str]], align: str | None = None) -> str:
    """A markdown table; `align` is one letter per column, l or r (default: l then r)."""
    align = align or "l" + "r" * (len(headers) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    lines = [headers, rule, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def now_utc() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
