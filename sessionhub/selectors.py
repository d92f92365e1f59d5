import logging
from dataclasses import dataclass

from django.db import DatabaseError, connection, connections

from sessionhub.redis import REDIS_UNAVAILABLE, get_redis
from sessionhub.replica import REPLICA, replica_configured

logger = logging.getLogger(__name__)


def _database_state() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("health: database unavailable (%s)", type(exc).__name__)
        # Drop the broken connection so the next request reconnects instead of reusing it.
        connection.close_if_unusable_or_obsolete()
        return "unavailable"
    return "ok"


def _redis_state() -> str:
    try:
        get_redis().ping()
    except REDIS_UNAVAILABLE as exc:
        logger.warning("health: redis unavailable (%s)", type(exc).__name__)
        return "unavailable"
    return "ok"


def health_check() -> dict[str, str]:
    return {"database": _database_state(), "redis": _redis_state()}


@dataclass(frozen=True)
class ReplicaLag:
    """How far the reports' replica trails the primary (None: its state is unknown)."""

    available: bool
    is_replica: bool = True
    seconds: float | None = None  # since the last replayed commit, 0 when caught up
    bytes_behind: int | None = None  # WAL the primary wrote that the replica has not replayed


# Replay lag in time: 0 when everything received is replayed (an idle primary is not "lag"),
# else the age of the last replayed commit.
_REPLICA_LAG_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())
       END,
       CASE WHEN pg_is_in_recovery()
            THEN greatest(pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn()), 0)
       END
"""


def replica_lag() -> ReplicaLag | None:
    """The replica's lag (one query on each database), None when no replica is configured."""
    if not replica_configured():
        return None
    replica = connections[REPLICA]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_lsn()::text")
            (primary_lsn,) = cursor.fetchone()
        with replica.cursor() as cursor:
            cursor.execute(_REPLICA_LAG_SQL, [primary_lsn])
            in_recovery, seconds, behind = cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("replica lag unknown (%s)", type(exc).__name__)
        replica.close_if_unusable_or_obsolete()
        return ReplicaLag(available=False)
    return ReplicaLag(
        available=True,
        is_replica=bool(in_recovery),
        seconds=None if seconds is None else max(float(seconds), 0.0),
        bytes_behind=None if behind is None else int(behind),
    )
