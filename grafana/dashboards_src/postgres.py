"""PostgreSQL, on postgres_exporter's metrics (in the spirit of Grafana dashboard 9628).

PostgreSQL holds the accounts, the audit trail and the analytics views and rollups.
"""

from .common import (
    dashboard,
    finish,
    label_values_variable,
    prom,
    row,
    series_panel,
    stat_panel,
    up_down,
)

UID = "sessionhub-postgresql"
INSTANCE = 'instance=~"$instance"'
DB = 'instance=~"$instance", datname=~"$datname"'


def _rate(metric: str) -> str:
    return f"sum(rate({metric}{{{DB}}}[$__rate_interval]))"


UP = f"max(pg_up{{{INSTANCE}}})"
CONNECTIONS = f"sum(pg_stat_database_numbackends{{{DB}}})"
MAX_CONNECTIONS = f"max(pg_settings_max_connections{{{INSTANCE}}})"
CONNECTIONS_USED = f"{CONNECTIONS} / {MAX_CONNECTIONS}"
CONNECTIONS_BY_STATE = f"sum by (state) (pg_stat_activity_count{{{DB}}})"
COMMITS = _rate("pg_stat_database_xact_commit")
ROLLBACKS = _rate("pg_stat_database_xact_rollback")
TUPLES = {
    "fetched": _rate("pg_stat_database_tup_fetched"),
    "returned": _rate("pg_stat_database_tup_returned"),
    "inserted": _rate("pg_stat_database_tup_inserted"),
    "updated": _rate("pg_stat_database_tup_updated"),
    "deleted": _rate("pg_stat_database_tup_deleted"),
}
BLKS_HIT = f"sum(increase(pg_stat_database_blks_hit{{{DB}}}[$__range]))"
BLKS_READ = f"sum(increase(pg_stat_database_blks_read{{{DB}}}[$__range]))"
CACHE_HIT_RATIO = f"{BLKS_HIT} / clamp_min({BLKS_HIT} + {BLKS_READ}, 1)"
CACHE_HIT_RATIO_SERIES = (
    f"{_rate('pg_stat_database_blks_hit')} / clamp_min({_rate('pg_stat_database_blks_hit')} "
    f"+ {_rate('pg_stat_database_blks_read')}, 1)"
)
LOCKS_BY_MODE = f"sum by (mode) (pg_locks_count{{{DB}}})"
DATABASE_SIZE = f"sum by (datname) (pg_database_size_bytes{{{DB}}})"
DEADLOCKS = _rate("pg_stat_database_deadlocks")
CONFLICTS = _rate("pg_stat_database_conflicts")
TEMP_BYTES = _rate("pg_stat_database_temp_bytes")
LONGEST_TRANSACTION = f"max(pg_stat_activity_max_tx_duration{{{DB}}})"


def build():
    board = (
        dashboard(
            UID,
            "PostgreSQL",
            "The PostgreSQL of sessionhub (accounts, audit trail, analytics views), from "
            "postgres_exporter.",
        )
        .with_variable(
            label_values_variable("instance", "Instance", "label_values(pg_up, instance)")
        )
        .with_variable(
            label_values_variable(
                "datname",
                "Database",
                'label_values(pg_stat_database_numbackends{instance=~"$instance"}, datname)',
                include_all=True,
            )
        )
    )

    board = board.with_row(row("Overview"))
    board = board.with_panel(
        stat_panel(
            "Up",
            UP,
            "1 when postgres_exporter reached PostgreSQL at its last scrape.",
            steps=[(None, "red"), (1, "green")],
        ).mappings(up_down())
    )
    board = board.with_panel(
        stat_panel("Connections", CONNECTIONS, "Backends connected to the selected databases.")
    )
    board = board.with_panel(
        stat_panel(
            "Connections used",
            CONNECTIONS_USED,
            "Connections to the selected databases, as a share of max_connections.",
            "percentunit",
            steps=[(None, "green"), (0.75, "orange"), (0.9, "red")],
        )
    )
    board = board.with_panel(
        stat_panel(
            "Cache hit ratio",
            CACHE_HIT_RATIO,
            "Share of block reads served from shared buffers, over the dashboard's time range.",
            "percentunit",
            steps=[(None, "red"), (0.9, "orange"), (0.99, "green")],
        )
    )
    board = board.with_panel(
        stat_panel(
            "Database size",
            f"sum({DATABASE_SIZE})",
            "Size on disk of the selected databases.",
            "bytes",
        )
    )
    board = board.with_panel(
        stat_panel(
            "Longest transaction",
            LONGEST_TRANSACTION,
            "Age of the oldest open transaction; long ones hold back vacuum and lock rows.",
            "s",
            steps=[(None, "green"), (60, "orange"), (300, "red")],
        )
    )

    board = board.with_row(row("Activity"))
    board = board.with_panel(
        series_panel(
            "Transactions/s",
            "Commits and rollbacks per second.",
            prom(COMMITS, "commits", "A"),
            prom(ROLLBACKS, "rollbacks", "B"),
            unit="ops",
        )
    )
    board = board.with_panel(
        series_panel(
            "Tuples/s",
            "Rows fetched, returned, inserted, updated and deleted per second.",
            *(
                prom(expr, name, chr(ord("A") + index))
                for index, (name, expr) in enumerate(TUPLES.items())
            ),
            unit="ops",
        )
    )
    board = board.with_panel(
        series_panel(
            "Connections by state",
            "Backends by state (active, idle, idle in transaction, ...), and max_connections.",
            prom(CONNECTIONS_BY_STATE, "{{state}}", "A"),
            prom(MAX_CONNECTIONS, "max_connections", "B"),
        )
    )
    board = board.with_panel(
        series_panel(
            "Cache hit ratio",
            "Share of block reads served from shared buffers.",
            prom(CACHE_HIT_RATIO_SERIES, "hit ratio"),
            unit="percentunit",
        ).max(1)
    )

    board = board.with_row(row("Locks, size and problems"))
    board = board.with_panel(
        series_panel(
            "Locks by mode",
            "Locks held or awaited, by mode.",
            prom(LOCKS_BY_MODE, "{{mode}}"),
        )
    )
    board = board.with_panel(
        series_panel(
            "Database size",
            "Size on disk of each selected database.",
            prom(DATABASE_SIZE, "{{datname}}"),
            unit="bytes",
        )
    )
    board = board.with_panel(
        series_panel(
            "Deadlocks and conflicts/s",
            "Deadlocks detected and queries cancelled by recovery conflicts, per second.",
            prom(DEADLOCKS, "deadlocks", "A"),
            prom(CONFLICTS, "conflicts", "B"),
            unit="ops",
        )
    )
    board = board.with_panel(
        series_panel(
            "Temporary files",
            "Bytes written to temporary files per second (sorts and hashes beyond work_mem).",
            prom(TEMP_BYTES, "temp bytes/s"),
            unit="Bps",
        )
    )
    return finish(board)
