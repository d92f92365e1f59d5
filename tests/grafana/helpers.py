"""What the Grafana tests share: the files, the queries of every panel, and the expansion of
Grafana's variables and SQL macros the way Grafana does it before a query reaches a datasource.

SQL (grafana-postgresql-datasource): the browser first replaces the template variables
(a single value is inserted as it is, single quotes doubled; a multi-value as a quoted list),
then the server expands the macros (pkg/tsdb/grafana-postgresql-datasource/macros.go):
  $__timeFilter(col)       -> col BETWEEN '<from RFC 3339>' AND '<to RFC 3339>'
  $__timeFrom(), $__timeTo() -> '<from>', '<to>'
  $__time(col)             -> col AS "time"
  $__timeEpoch(col)        -> extract(epoch from col) as "time"
  $__timeGroup(col, '5m')  -> floor(extract(epoch from col)/300)*300 ($__timeGroupAlias: AS "time")
  $__unixEpochFilter(col), $__unixEpochFrom(), $__unixEpochTo()
An unknown macro is an error, as it is in Grafana.

PromQL: $__interval, $__rate_interval (max($__interval + scrape interval, 4 x scrape
interval)), $__range, and the dashboard's variables (a single value escaped as a literal, a
multi-value or "All" as a regex: the variable's allValue, or the values joined with |).
"""

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
PROVISIONING = GRAFANA / "provisioning"
DATASOURCES_YML = PROVISIONING / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS_YML = PROVISIONING / "dashboards" / "dashboards.yml"
GRAFANA_INI = GRAFANA / "grafana.ini"

PROMETHEUS_UID = "prometheus"
POSTGRES_UID = "sessionhub-postgres"
POSTGRES_TYPE = "grafana-postgresql-datasource"
ROLE = "sessionhub_grafana"

UIDS = {
    "sessionhub-sessions": "User Session Analytics",
    "sessionhub-redis": "Redis",
    "sessionhub-postgresql": "PostgreSQL",
    "sessionhub-django-celery": "Django + Celery",
}


def load_dashboards() -> dict[str, dict]:
    """uid -> dashboard JSON, as committed."""
    boards = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        boards[board["uid"]] = board
    return boards


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def panels(board: dict) -> Iterator[dict]:
    """Every panel, rows' nested panels included; rows themselves are not panels."""
    for panel in board.get("panels", []):
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


@dataclass(frozen=True)
class Target:
    board: dict
    panel: dict
    target: dict

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.board["uid"], self.panel["title"], self.target["refId"])

    @property
    def datasource_uid(self) -> str:
        return (self.target.get("datasource") or self.panel.get("datasource") or {}).get("uid")

    def __str__(self) -> str:
        return " / ".join(self.key)


def targets(boards: dict[str, dict], datasource_uid: str | None = None) -> list[Target]:
    found = [
        Target(board, panel, target)
        for board in boards.values()
        for panel in panels(board)
        for target in panel.get("targets", [])
    ]
    if datasource_uid is not None:
        found = [t for t in found if t.datasource_uid == datasource_uid]
    return found


# --- time ----------------------------------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration(text: str) -> timedelta:
    """'30d', '6h', '5m' -> timedelta."""
    match = re.fullmatch(r"(\d+)([smhdw])", text)
    assert match, f"not a simple duration: {text!r}"
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def panel_range(board: dict, panel: dict, now: datetime) -> tuple[datetime, datetime]:
    """The time range a panel queries: the dashboard's, or the panel's relative override."""
    if panel.get("timeFrom"):
        return now - duration(panel["timeFrom"]), now
    start, end = board["time"]["from"], board["time"]["to"]
    assert end == "now", end
    assert start.startswith("now-"), start
    return now - duration(start.removeprefix("now-")), now


def rfc3339nano(moment: datetime) -> str:
    """Go's time.RFC3339Nano of a UTC time: fractional seconds without trailing zeros."""
    assert moment.utcoffset() == timedelta(0), "expected an aware UTC time"
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def prom_duration(seconds: float) -> str:
    return f"{math.ceil(seconds)}s"


# --- template variables --------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def variable_values(board: dict) -> dict[str, dict]:
    """name -> the variable's model."""
    return {v["name"]: v for v in board.get("templating", {}).get("list", [])}


def current_value(variable: dict):
    return variable["current"]["value"]


def replace_variables(text: str, values: dict[str, str]) -> str:
    """Replace $name / ${name} of known variables; anything else (macros) is left alone."""

    def substitute(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        return values[name] if name in values else match.group(0)

    return _VARIABLE.sub(substitute, text)


def sql_variable(variable: dict, value) -> str:
    """Grafana's SQL interpolation of a variable's value."""
    if variable.get("multi") or variable.get("includeAll"):
        values = value if isinstance(value, list) else [value]
        return ",".join("'" + str(v).replace("'", "''") + "'" for v in values)
    return str(value).replace("'", "''")


_REGEX_SPECIAL = re.compile(r"([\\^$*+?.()|{}\[\]])")


def prometheus_variable(variable: dict, value) -> str:
    """Grafana's PromQL interpolation of a variable's value."""
    if value in ("$__all", ["$__all"]):
        return variable["allValue"]
    if not variable.get("multi") and not variable.get("includeAll"):
        return str(value).replace("\\", "\\\\").replace("'", "\\\\'")
    values = value if isinstance(value, list) else [value]
    escaped = [_REGEX_SPECIAL.sub(r"\\\\\1", str(v)) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


# --- SQL macros ----------------------------------------------------------------------------------

_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")


def expand_sql_macros(sql: str, start: datetime, end: datetime) -> str:
    def interval_seconds(text: str) -> float:
        return duration(text.strip("'")).total_seconds()

    def group(args: list[str]) -> str:
        seconds = interval_seconds(args[1])
        number = f"{seconds:g}"
        return f"floor(extract(epoch from {args[0]})/{number})*{number}"

    def evaluate(match: re.Match) -> str:
        name, args = match.group(1), [a.strip() for a in match.group(2).split(",")]
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{rfc3339nano(start)}' AND '{rfc3339nano(end)}'"
        if name == "__timeFrom":
            return f"'{rfc3339nano(start)}'"
        if name == "__timeTo":
            return f"'{rfc3339nano(end)}'"
        if name == "__timeGroup":
            return group(args)
        if name == "__timeGroupAlias":
            return group(args) + ' AS "time"'
        if name == "__unixEpochFilter":
            first, last = int(start.timestamp()), int(end.timestamp())
            return f"{args[0]} >= {first} AND {args[0]} <= {last}"
        if name == "__unixEpochFrom":
            return str(int(start.timestamp()))
        if name == "__unixEpochTo":
            return str(int(end.timestamp()))
        raise ValueError(f"unknown macro {name!r}")

    return _MACRO.sub(evaluate, sql)


def expand_sql(target: Target, now: datetime, overrides: dict | None = None) -> str:
    """A panel's SQL as Grafana sends it to PostgreSQL at `now` (variables at their defaults,
    or the values in `overrides`)."""
    start, end = panel_range(target.board, target.panel, now)
    variables = variable_values(target.board)
    chosen = {name: current_value(v) for name, v in variables.items()} | (overrides or {})
    values = {name: sql_variable(variables[name], value) for name, value in chosen.items()}
    sql = target.target["rawSql"]
    # $__interval depends on the panel's width in Grafana: not emulated here, so not used.
    assert "$__interval" not in sql, f"{target}: $__interval in SQL is not emulated by the tests"
    return expand_sql_macros(replace_variables(sql, values), start, end)


# --- PromQL --------------------------------------------------------------------------------------


def rate_interval(interval_s: float, scrape_s: float) -> float:
    return max(interval_s + scrape_s, 4 * scrape_s)


def expand_promql(expr: str, variables: dict[str, str], interval_s, scrape_s, range_s) -> str:
    builtins = {
        "__interval": prom_duration(interval_s),
        "__interval_ms": str(int(interval_s * 1000)),
        "__rate_interval": prom_duration(rate_interval(interval_s, scrape_s)),
        "__range": prom_duration(range_s),
        "__range_s": str(math.ceil(range_s)),
        "__range_ms": str(math.ceil(range_s) * 1000),
    }
    return replace_variables(expr, variables | builtins)


_LABEL_VALUES = re.compile(r"label_values\((?:(.+),\s*)?([a-zA-Z_][a-zA-Z0-9_]*)\)")


def parse_label_values(query: str) -> tuple[str | None, str]:
    """label_values(selector, label) -> (selector, label)."""
    match = _LABEL_VALUES.fullmatch(query.strip())
    assert match, f"not a label_values() query: {query!r}"
    return match.group(1), match.group(2)
