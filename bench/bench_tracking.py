"""Tracking overhead: what session tracking costs per request, design by design.

For each endpoint (trivial, then realistic): FLUSHDB of the bench Redis (db 12); for every
case, fresh sessions opened through the real login service and its own gunicorn (2 sync
workers, the project's configuration without access log); a wrk warm-up per case; then the
measured time, interleaved: slices of SLICE_SECONDS taken in turn from every case (round after
round, each round starting one case further), each slice started on an idle machine. Slow
drifts of the machine's speed thus affect every design alike, and a slice during which
processes foreign to the benchmark took more than MAX_OTHER_SHARE of the machine is discarded
and measured again. At the end a graceful stop (SIGTERM) of every gunicorn, then, for
`tracked`, the "nothing lost" check and, for the PostgreSQL cases, their table's bloat.
"""

import statistics
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import common
from .common import RESULTS_DIR, CpuUse, Gunicorn, Measurement, WrkResult, md_table, rel

ENDPOINTS = ("trivial", "realistic")
SESSIONS = 1000
PASSWORD = "bench-password"  # noqa: S105 - throwaway accounts in the bench database only
TARGET_RATIO = 0.95
WARMUP_SECONDS = 5.0
SLICE_SECONDS = 5.0
MAX_OTHER_SHARE = 0.05
# Past this many discarded slices in a case, the least disturbed ones are kept (and flagged).
MAX_DISCARDED = 12


@dataclass(frozen=True)
class Case:
    name: str  # also the design's key in bench.designs.DESIGNS and its URL
    sessions: int  # distinct sessions (tokens) wrk rotates through


CASES = (
    Case("untracked", SESSIONS),
    Case("tracked", SESSIONS),
    Case("pipeline", SESSIONS),
    Case("lua", SESSIONS),
    Case("pg-hot", 1),
    Case("pg-1000", SESSIONS),
)


@dataclass
class Outcome:
    case: Case
    endpoint: str
    warmup: WrkResult
    measured: Measurement  # the accepted slices
    discarded: list[WrkResult]  # slices disturbed by foreign load
    cpu: CpuUse  # over the accepted slices
    server_ok: int | None  # 2xx responses gunicorn sent (django-prometheus), warm-up included
    body_bytes: int  # the endpoint's response body, fetched once before the load
    check: dict | None = None
    bloat: dict | None = None
    notes: list[str] = field(default_factory=list)


# --- preparing a case --------------------------------------------------------------------------


def ensure_users(count: int) -> list[str]:
    from django.contrib.auth.hashers import make_password

    from accounts.models import User

    names = [f"bench-{i:04d}" for i in range(count)]
    existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
    password = make_password(PASSWORD)
    User.objects.bulk_create(
        User(
            username=name,
            password=password,
            email=f"{name}@bench.example.com",
            first_name="Bench",
            last_name=f"User {name[-4:]}",
        )
        for name in names
        if name not in existing
    )
    return names


def open_sessions(usernames: list[str], tokens_file: Path) -> list[tuple[str, int]]:
    """Log every user in once (the real login service); write the access tokens to a file."""
    from accounts import services
    from accounts.models import User

    ids = dict(User.objects.filter(username__in=usernames).values_list("username", "id"))
    sessions, tokens = [], []
    for name in usernames:
        pair = services.login(username=name, password=PASSWORD, ip="127.0.0.1", user_agent="wrk")
        sessions.append((pair.sid, ids[name]))
        tokens.append(pair.access)
    tokens_file.write_text("\n".join(tokens) + "\n")
    return sessions


def pg_prepare(table: str, sessions: list[tuple[str, int]]) -> dict:
    """A fresh session table with one row per session, vacuumed; its size and counters."""
    from django.db import connection

    from .designs import pg_schema

    with connection.cursor() as cursor:
        cursor.execute(pg_schema(table))
        cursor.executemany(
            f"INSERT INTO {table} (sid, user_id, started_at, last_active, ip, user_agent) "
            "VALUES (%s, %s, now(), now(), '127.0.0.1', 'wrk')",
            sessions,
        )
        cursor.execute(f"VACUUM (ANALYZE) {table}")
    return pg_table_stats(table)


def pg_table_stats(table: str) -> dict:
    from django.db import connection

    connection.close()  # a new backend: fresh statistics, no cached snapshot
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n_tup_upd, n_tup_hot_upd, n_dead_tup, autovacuum_count, "
            "pg_relation_size(relid), pg_indexes_size(relid) "
            "FROM pg_stat_user_tables WHERE relname = %s",
            [table],
        )
        row = cursor.fetchone()
        cursor.execute(f"SELECT count(*) FROM {table}")
        row = (*row, cursor.fetchone()[0])
    connection.close()
    names = ("updates", "hot_updates", "dead", "autovacuums", "table_bytes", "index_bytes", "rows")
    return dict(zip(names, row, strict=True))


def pg_after(table: str, before: dict, expected_updates: int) -> dict:
    """The table once the workers' backends have reported their statistics (they do on exit)."""
    deadline = time.monotonic() + 15
    after = pg_table_stats(table)
    while after["updates"] - before["updates"] < expected_updates and time.monotonic() < deadline:
        time.sleep(0.5)
        after = pg_table_stats(table)
    return {"before": before, "after": after}


def fetch_once(url: str, tokens_file: Path) -> int:
    """One authenticated request before the load: it must succeed; returns the body's size."""
    token = tokens_file.read_text().split("\n", 1)[0]
    headers = {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - our own http URL
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")
        return len(response.read())


# --- after a case ------------------------------------------------------------------------------


def server_ok_responses(metrics_dir: Path) -> int | None:
    """2xx responses counted by django-prometheus in the workers (multiprocess files)."""
    try:
        from prometheus_client import CollectorRegistry, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(metrics_dir))
    except Exception:
        return None
    total, found = 0, False
    for metric in registry.collect():
        if metric.name != "django_http_responses_total_by_status":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_total") and str(sample.labels.get("status")).startswith("2"):
                total += int(sample.value)
                found = True
    return total if found else None


def tracked_check(sids: list[str], runs: list[WrkResult], server_ok: int | None) -> dict:
    """Σ api_call_count over the case's sessions and the stats hash, against what was served."""
    from accounts import livesessions
    from core.rediskeys import keys

    client = common.redis_client()
    found = livesessions.get_many(sids)
    stats = {k.decode(): int(v) for k, v in client.hgetall(keys.stats()).items()}
    return {
        "sessions_found": len(found),
        "sessions": len(sids),
        "redis_calls": sum(session.api_call_count for session in found),
        "stats_api_calls": stats.get("api_calls", 0),
        "tracking_errors": stats.get("tracking_errors", 0),
        "tracking_dropped": stats.get("tracking_dropped", 0),
        "sessions_rebuilt": stats.get("sessions_rebuilt", 0),
        # + 1: the request fetch_once() made before the load
        "wrk_ok": 1 + sum(run.ok for run in runs),
        "wrk_sent": 1 + sum(run.sent for run in runs),
        "wrk_non_2xx": sum(run.non_2xx_3xx for run in runs),
        "server_ok": server_ok,
    }


def check_verdict(check: dict) -> tuple[bool, str]:
    """Nothing lost: the counts agree with each other and with what the workers answered."""
    counted = check["redis_calls"]
    agree = counted == check["stats_api_calls"]
    complete = check["sessions_found"] == check["sessions"]
    clean = not (check["tracking_errors"] or check["tracking_dropped"] or check["wrk_non_2xx"])
    bounded = check["wrk_ok"] <= counted <= check["wrk_sent"]
    served = check["server_ok"]
    exact = served is None or counted == served
    ok = agree and complete and clean and bounded and exact
    if served is not None and agree and exact:
        what = f"Σ api_call_count = stats api_calls = 2xx served = {counted:,}"
    else:
        what = (
            f"Σ api_call_count {counted:,}, stats api_calls {check['stats_api_calls']:,}, "
            f"2xx served {'?' if served is None else f'{served:,}'}"
        )
    in_flight = counted - check["wrk_ok"]
    if in_flight > 0 and bounded:
        what += f"; {in_flight} of them answered after wrk stopped reading (in flight at its stop)"
    elif not bounded:
        what += f"; outside [{check['wrk_ok']:,}, {check['wrk_sent']:,}] (read, written)"
    if not complete:
        what += f"; {check['sessions'] - check['sessions_found']} sessions missing in Redis"
    if not clean:
        what += "; tracking errors or non-2xx answers"
    return ok, what


# --- one endpoint, every case -----------------------------------------------------------------


def slices(duration: float) -> list[float]:
    """The measured time of a case cut into slices of at most SLICE_SECONDS (whole seconds)."""
    total = max(1, round(duration))
    size = max(1, round(SLICE_SECONDS))
    return [size] * (total // size) + ([total % size] if total % size else [])


class Running:
    """One case while its endpoint is measured: sessions, gunicorn, slices taken so far."""

    def __init__(self, case: Case, endpoint: str, usernames: list[str], duration: float) -> None:
        from .designs import PG_TABLES

        self.case = case
        self.endpoint = endpoint
        self.label = f"{case.name}/{endpoint}"
        self.tokens_file = RESULTS_DIR / f"tokens-{case.name}.txt"
        self.sessions = open_sessions(usernames[: case.sessions], self.tokens_file)
        self.pg_table = PG_TABLES.get(case.name)
        self.pg_before = pg_prepare(self.pg_table, self.sessions) if self.pg_table else None
        self.server = Gunicorn(f"{case.name}-{endpoint}")
        self.todo = slices(duration)
        self.accepted: list[tuple[WrkResult, CpuUse]] = []
        self.discarded: list[tuple[WrkResult, CpuUse]] = []
        self.warm: WrkResult | None = None
        self.body_bytes = 0
        self.meter: common.CpuMeter | None = None
        self.exit_code: int | None = None

    @property
    def url(self) -> str:
        return f"{self.server.base_url}/bench/{self.case.name}/{self.endpoint}"

    def start(self) -> None:
        self.server.start(ready_path=f"/bench/{self.case.name}/{self.endpoint}")
        self.body_bytes = fetch_once(self.url, self.tokens_file)

    def warm_up(self) -> None:
        self.warm = common.run_wrk(self.url, self.tokens_file, WARMUP_SECONDS)
        # After the warm-up every worker holds its database connection (kept for the case).
        self.meter = common.CpuMeter(self.server.pids(), common.postgres_pids())

    @property
    def wants_more(self) -> bool:
        return bool(self.todo) and len(self.discarded) <= MAX_DISCARDED

    def measure_slice(self) -> None:
        common.wait_for_quiet()
        started = time.monotonic()
        before = self.meter.snapshot()
        result = common.run_wrk(self.url, self.tokens_file, self.todo[0])
        cpu = self.meter.use(before, self.meter.snapshot(), time.monotonic() - started)
        if cpu.other_share <= MAX_OTHER_SHARE:
            self.accepted.append((result, cpu))
            self.todo.pop(0)
            verdict = "kept"
        else:
            self.discarded.append((result, cpu))
            verdict = (
                f"discarded: other processes took {cpu.other_share * 100:.0f} % of the machine"
            )
        print(f"    {self.label}: {result.rps:,.0f} req/s, {verdict}", flush=True)

    def stop(self) -> None:
        self.exit_code = self.server.stop()

    def outcome(self) -> Outcome:
        flagged = 0
        while self.todo and self.discarded:  # too disturbed: keep the least disturbed slices
            self.discarded.sort(key=lambda item: item[1].other_share)
            self.accepted.append(self.discarded.pop(0))
            self.todo.pop(0)
            flagged += 1
        measured = Measurement([result for result, _ in self.accepted])
        outcome = Outcome(
            case=self.case,
            endpoint=self.endpoint,
            warmup=self.warm,
            measured=measured,
            discarded=[result for result, _ in self.discarded],
            cpu=CpuUse.total([cpu for _, cpu in self.accepted]),
            server_ok=server_ok_responses(self.server.metrics_dir),
            body_bytes=self.body_bytes,
        )
        if flagged:
            outcome.notes.append(
                f"{flagged} slice(s) kept although other processes took more than "
                f"{MAX_OTHER_SHARE * 100:.0f} % of the machine: figures are pessimistic"
            )
        if self.exit_code not in (0, None):
            outcome.notes.append(f"gunicorn exited with {self.exit_code}")
        if measured.non_2xx_3xx or measured.socket_errors:
            outcome.notes.append(
                f"{measured.non_2xx_3xx} non-2xx, {measured.socket_errors} socket errors"
            )
        every_run = [self.warm, *measured.runs, *outcome.discarded]
        if self.case.name == "tracked":
            sids = [sid for sid, _ in self.sessions]
            outcome.check = tracked_check(sids, every_run, outcome.server_ok)
        if self.pg_table:
            expected = outcome.server_ok or sum(run.ok for run in every_run)
            outcome.bloat = pg_after(self.pg_table, self.pg_before, expected)
        return outcome


def run_endpoint(endpoint: str, duration: float, usernames: list[str]) -> list[Outcome]:
    common.redis_flush()
    print(f"--> {endpoint}: opening sessions, starting {len(CASES)} gunicorns", flush=True)
    cases = [Running(case, endpoint, usernames, duration) for case in CASES]
    try:
        for running in cases:
            running.start()
        for running in cases:
            common.wait_for_quiet()
            running.warm_up()
        rounds = 0
        while any(running.wants_more for running in cases):
            shift = rounds % len(cases)
            for running in cases[shift:] + cases[:shift]:
                if running.wants_more:
                    running.measure_slice()
            rounds += 1
        time.sleep(0.5)  # requests wrk wrote just before its stop are still being answered
    finally:
        for running in cases:
            running.stop()
    outcomes = [running.outcome() for running in cases]
    for o in outcomes:
        print(
            f"    {o.case.name}/{endpoint}: {o.measured.rps:,.0f} req/s, "
            f"p50 {o.measured.p50_us / 1000:.2f} ms, p99 {o.measured.p99_us / 1000:.2f} ms, "
            f"{len(o.discarded)} slice(s) discarded",
            flush=True,
        )
    return outcomes


# --- report ------------------------------------------------------------------------------------


def _ms(us: float) -> str:
    return f"{us / 1000:.2f} ms"


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.2f} MB" if size >= 1024 * 1024 else f"{size / 1024:.0f} kB"


def render(outcomes: list[Outcome], duration: float) -> str:
    by_key = {(o.case.name, o.endpoint): o for o in outcomes}
    server_cmd = " ".join(
        ["DJANGO_SETTINGS_MODULE=bench.settings", *Gunicorn("x").command()[1:]]
    ).replace("-m gunicorn", "gunicorn", 1)
    wrk_cmd = " ".join(
        common.wrk_command(
            "http://127.0.0.1:$PORT/bench/<design>/<endpoint>",
            Path("bench/results/tokens-<case>.txt"),
            slices(duration)[0],
        )
    )
    lines = [
        "## Tracking overhead",
        "",
        "What each session tracking design costs per request behind the same DRF endpoint. "
        "Per endpoint: Redis db 12 emptied, then every case gets fresh sessions (opened by the "
        f"login service) and its own gunicorn, a {WARMUP_SECONDS:g} s warm-up, and "
        f"{duration:g} s of measurement in slices of at most {SLICE_SECONDS:g} s taken in turn "
        "from every case (interleaved, so that drifts of the machine's speed hit every design "
        "alike).",
        "",
        "```",
        server_cmd,
        wrk_cmd,
        "```",
        "",
        "Designs: `untracked` simplejwt's stateless JWT authentication (no Redis, no SQL); "
        "`tracked` the project's `SessionJWTAuthentication` (in-process counts, one Lua flush "
        "per worker every 100 ms); `pipeline` one 4-command Redis pipeline per request; `lua` "
        "one Lua script call per request; `pg-*` one PostgreSQL `UPDATE` of the session's row "
        "per request (autocommit), on one hot session or rotating over 1,000. All other cases "
        f'rotate over {SESSIONS:,} sessions. Endpoints: `trivial` answers `{{"ok": true}}`; '
        "`realistic` reads the user's row by primary key and answers about 1 KB of JSON "
        f"({_body_note(by_key)}).",
        "",
    ]
    headers = [
        "Endpoint",
        "Design",
        "Requests/s",
        "p50",
        "p99",
        "vs untracked",
        "vs untracked per round: median (range)",
        "Tracking cost (µs/req)",
    ]
    rows = []
    for endpoint in ENDPOINTS:
        base = by_key.get(("untracked", endpoint))
        for case in CASES:
            o = by_key.get((case.name, endpoint))
            if o is None:
                continue
            m = o.measured
            ratio = m.rps / base.measured.rps if base else float("nan")
            cost = (1e6 / m.rps - 1e6 / base.measured.rps) if base else float("nan")
            name = f"**{case.name}**" if case.name == "tracked" else case.name
            rows.append(
                [
                    endpoint,
                    name,
                    f"{m.rps:,.0f}",
                    _ms(m.p50_us),
                    _ms(m.p99_us),
                    f"{ratio:.3f}",
                    "—" if case.name == "untracked" or base is None else _round_ratios(o, base),
                    "—" if case.name == "untracked" else f"{cost:+.0f}",
                ]
            )
    lines += [md_table(headers, rows, "llrrrrrr"), ""]

    lines += _verdict(by_key)
    lines += ["", "### Where the CPU went (CPU µs per request, measured slices)", ""]
    cpu_rows = []
    for endpoint in ENDPOINTS:
        for case in CASES:
            o = by_key.get((case.name, endpoint))
            if o is None:
                continue
            per = o.cpu.per_request_us(o.measured.requests)
            cpu_rows.append(
                [
                    endpoint,
                    case.name,
                    f"{per['gunicorn']:.0f}",
                    f"{per['redis']:.0f}",
                    f"{per['postgres']:.0f}",
                    f"{per['wrk']:.0f}",
                    f"{per['kernel']:.0f}",
                    f"{per['other']:.0f}",
                    f"{o.cpu.idle_share * 100:.0f} %",
                    f"{o.cpu.other_share * 100:.1f} %",
                    str(len(o.discarded)),
                ]
            )
    lines += [
        md_table(
            [
                "Endpoint",
                "Design",
                "gunicorn",
                "redis-server",
                "PostgreSQL",
                "wrk",
                "kernel",
                "other",
                "CPU idle",
                "other, % of machine",
                "Slices discarded",
            ],
            cpu_rows,
            "llrrrrrrrrr",
        ),
        "",
    ]

    checks = [o for o in outcomes if o.check is not None]
    if checks:
        lines += ["### Nothing lost under load (`tracked`)", ""]
        check_rows = []
        for o in checks:
            c = o.check
            ok, what = check_verdict(c)
            check_rows.append(
                [
                    o.endpoint,
                    f"{c['wrk_ok']:,}",
                    f"{c['wrk_sent']:,}",
                    "?" if c["server_ok"] is None else f"{c['server_ok']:,}",
                    f"{c['redis_calls']:,}",
                    f"{c['stats_api_calls']:,}",
                    str(c["tracking_errors"] + c["tracking_dropped"]),
                    ("**yes** — " if ok else "**NO** — ") + what,
                ]
            )
        lines += [
            md_table(
                [
                    "Endpoint",
                    "2xx read by the client",
                    "Requests the client wrote",
                    "2xx served (django-prometheus)",
                    "Σ api_call_count (Redis)",
                    "stats api_calls",
                    "Tracking errors",
                    "Nothing lost",
                ],
                check_rows,
                "lrrrrrrl",
            ),
            "",
            "Counted after the load stopped and gunicorn was stopped with SIGTERM (its "
            "`worker_exit` hook flushes the pending counts). The client columns add up the "
            "warm-up run, the measured run and the one request the runner makes before them "
            "(to check the endpoint answers 200), since all three used the case's sessions.",
            "",
        ]

    bloats = [o for o in outcomes if o.bloat is not None]
    if bloats:
        lines += ["### PostgreSQL table bloat left by the `pg` cases", ""]
        bloat_rows = []
        for o in bloats:
            b, a = o.bloat["before"], o.bloat["after"]
            bloat_rows.append(
                [
                    o.endpoint,
                    o.case.name,
                    f"{a['updates'] - b['updates']:,}",
                    f"{a['hot_updates'] - b['hot_updates']:,}",
                    f"{a['rows']:,}",
                    f"{a['dead']:,}",
                    f"{_mb(b['table_bytes'])} → {_mb(a['table_bytes'])}",
                    f"{_mb(b['index_bytes'])} → {_mb(a['index_bytes'])}",
                    str(a["autovacuums"] - b["autovacuums"]),
                ]
            )
        lines += [
            md_table(
                [
                    "Endpoint",
                    "Case",
                    "UPDATEs",
                    "of which HOT",
                    "Rows",
                    "n_dead_tup",
                    "Table size",
                    "Index size",
                    "Autovacuums",
                ],
                bloat_rows,
                "llrrrrrrr",
            ),
            "",
            "From `pg_stat_user_tables`, `pg_relation_size` and `pg_indexes_size` after the "
            "workers' connections closed; the table was recreated and vacuumed before each "
            "case (warm-up UPDATEs included).",
            "",
        ]

    notes = [f"- {o.case.name}/{o.endpoint}: {n}" for o in outcomes for n in o.notes]
    if notes:
        lines += ["Notes:", "", *notes, ""]

    lines += [
        "### How to read it",
        "",
        "- **Requests/s, p50, p99** are wrk's (`--latency`) over the measured slices only: "
        "requests/s is their requests over their time, p50 and p99 are merged from the 1,000 "
        "quantiles the wrk script prints per slice. wrk, the two gunicorn workers, Redis and "
        "PostgreSQL share the machine's cores, so the server is saturated in every case.",
        "- **vs untracked** is the design's requests/s divided by `untracked`'s for the same "
        f"endpoint. The project's target: `tracked` ≥ {TARGET_RATIO} on both endpoints. "
        "**Per round** gives the same ratio slice by slice (the k-th slice of the design over "
        "the k-th of `untracked`, taken in the same round): its median, and its range, which "
        "shows how much the machine's speed moved during the run.",
        "- **Tracking cost** is the difference in mean service time per request: a saturated "
        "server completes one request every 1/rps seconds, so the cost is "
        "1e6/rps(design) - 1e6/rps(untracked) µs. It is machine time per request (everything "
        "the design adds, on any core, waiting included), not the CPU time of one worker; "
        "the CPU table splits the CPU part by process.",
        "- **CPU table**: CPU time (user + system, all threads) spent during the measured "
        "slices divided by the requests wrk read: the gunicorn master and workers, redis-server "
        "(the whole server), the bench database's PostgreSQL backends with PostgreSQL's "
        "background processes, wrk, the kernel (interrupts, where loopback networking runs, "
        "and its own threads, such as the disk flushes behind PostgreSQL's commits), and "
        "`other`: processes foreign to the benchmark. `CPU idle` is the share of "
        f"the machine left idle. The measured time is cut into slices of {SLICE_SECONDS:g} s, "
        "each started once the machine has been idle for 2 s; a slice during which `other` "
        f"took more than {MAX_OTHER_SHARE * 100:.0f} % of the machine is discarded and measured "
        "again (`Slices discarded`).",
        "- **Nothing lost** passes when the sum of `api_call_count` over the case's sessions "
        "equals the stats hash's `api_calls` and the 2xx responses the workers sent, with no "
        "tracking error. wrk stops reading when its time is up, so the responses to the "
        f"requests still in flight (at most {common.WRK_CONNECTIONS} per wrk run) are served "
        "and counted but never read by wrk: the count is checked to lie between what wrk read "
        "and what it wrote.",
        f"- Raw wrk outputs and gunicorn error logs: `{rel(RESULTS_DIR)}/`.",
    ]
    return "\n".join(lines)


def round_ratios(outcome: Outcome, base: Outcome) -> list[float]:
    """Requests/s of the k-th kept slice of a case over the k-th of `untracked`: slices taken
    in the same round, minutes apart at most, so the machine's slow drifts cancel out."""
    pairs = zip(outcome.measured.runs, base.measured.runs, strict=False)
    return sorted(run.rps / ref.rps for run, ref in pairs if ref.rps)


def _round_ratios(outcome: Outcome, base: Outcome) -> str:
    ratios = round_ratios(outcome, base)
    if not ratios:
        return "—"
    median = statistics.median(ratios)
    return f"{median:.3f} ({ratios[0]:.2f} to {ratios[-1]:.2f})"


def _body_note(by_key: dict) -> str:
    sizes = {o.endpoint: o.body_bytes for o in by_key.values()}
    return ", ".join(f"`{name}` body: {size:,} bytes" for name, size in sizes.items())


def _verdict(by_key: dict) -> list[str]:
    lines = []
    for endpoint in ENDPOINTS:
        base, tracked = by_key.get(("untracked", endpoint)), by_key.get(("tracked", endpoint))
        if base is None or tracked is None:
            continue
        ratio = tracked.measured.rps / base.measured.rps
        pgs = [by_key.get((name, endpoint)) for name in ("pg-hot", "pg-1000")]
        pg_text = ", ".join(
            f"{tracked.measured.rps / pg.measured.rps:.1f} x {pg.case.name}"
            for pg in pgs
            if pg is not None
        )
        met = "meets" if ratio >= TARGET_RATIO else "**misses**"
        lines.append(
            f"- `{endpoint}`: tracked = {ratio:.3f} x untracked — {met} the {TARGET_RATIO} "
            f"target" + (f"; {pg_text}." if pg_text else ".")
        )
    return lines


def save_raw(outcomes: list[Outcome]) -> None:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    parts = []
    for o in outcomes:
        runs = [
            ("warm-up", o.warmup),
            *(("measured", run) for run in o.measured.runs),
            *(("discarded", run) for run in o.discarded),
        ]
        for kind, result in runs:
            parts.append(f"### {o.case.name}/{o.endpoint} ({kind})\n$ {result.command}\n")
            parts.append(result.output)
    (RESULTS_DIR / "tracking-wrk.txt").write_text("\n".join(parts))


def run(duration: float) -> str:
    common.django_setup()
    usernames = ensure_users(SESSIONS)
    outcomes = [o for endpoint in ENDPOINTS for o in run_endpoint(endpoint, duration, usernames)]
    common.redis_flush()
    save_raw(outcomes)
    return render(outcomes, duration)
