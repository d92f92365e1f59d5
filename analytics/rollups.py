"""The rollups the sync keeps as it writes sessions, and their rebuild from scratch.

analytics_user_day — API calls and sessions started per user per UTC day — is changed by
triggers on audit_session (analytics/migrations/0010_user_day_kept_by_sync.py) in the very
statement that changes the sessions, so it commits with the sync's rows or not at all. In the
sync's own transactions the triggers append the difference per (user, day) to
analytics_user_day_delta instead (0020_user_day_folded_after_sync.py), and `fold` adds those
deltas to the table once the run has committed (audit.signals.sessions_synced): each (user,
day) is upserted once per run, not once per transaction. What is kept incrementally must equal
what the sessions give when recomputed: `rebuild` is that recomputation (disaster recovery: a
restored backup, a rollup damaged by hand), and `differences` says where the kept table and a
recomputation disagree.
"""

from dataclasses import dataclass

from django.db import connection, transaction

# The definition of analytics_user_day over audit_session: each session's hours' calls on
# their UTC day, and one session started on its start day.
USER_DAY_FROM_SESSIONS = """
    SELECT activity.user_id, activity.day,
           sum(activity.api_calls)::bigint AS api_calls,
           sum(activity.sessions)::integer AS sessions_started
    FROM (
        SELECT s.user_id, (to_timestamp(h.key::bigint) AT TIME ZONE 'UTC')::date AS day,
               h.value::bigint AS api_calls, 0 AS sessions
        FROM audit_session s CROSS JOIN LATERAL jsonb_each_text(s.hourly_calls) h(key, value)
        WHERE s.user_id IS NOT NULL
        UNION ALL
        SELECT s.user_id, (s.started_at AT TIME ZONE 'UTC')::date, 0, 1
        FROM audit_session s WHERE s.user_id IS NOT NULL
    ) activity
    GROUP BY activity.user_id, activity.day
"""

DIFFERENCES = f"""
    SELECT coalesce(k.user_id, r.user_id), coalesce(k.day, r.day),
           k.api_calls, r.api_calls, k.sessions_started, r.sessions_started
    FROM analytics_user_day k FULL JOIN ({USER_DAY_FROM_SESSIONS}) r
         ON r.user_id = k.user_id AND r.day = k.day
    WHERE k.api_calls IS DISTINCT FROM r.api_calls
       OR k.sessions_started IS DISTINCT FROM r.sessions_started
    ORDER BY 1, 2
"""  # noqa: S608 - built from constants


def fold() -> int:
    """Add the deltas the sync appended to analytics_user_day, in one transaction; returns how
    many deltas were folded. Safe to run at any time, and twice at once (each delta is folded
    once)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT analytics_user_day_fold()")
        return cursor.fetchone()[0]


def fold_after_sync(**kwargs) -> None:
    """Receiver of audit.signals.sessions_synced."""
    fold()


@dataclass(frozen=True)
class Rebuilt:
    rows: int


def rebuild() -> Rebuilt:
    """Recompute analytics_user_day from audit_session, in one transaction.

    The deltas not folded yet go with it (the recomputation counts their sessions). TRUNCATE
    takes the tables' exclusive locks first, the deltas' before the table's as a fold takes
    them (so the two cannot deadlock): a sync or a fold that has already written to them
    commits before (and the recomputation sees its sessions); one that writes later waits for
    this commit and then adds its difference on top. Either way nothing counts twice.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE analytics_user_day_delta, analytics_user_day")
        cursor.execute(
            "INSERT INTO analytics_user_day (user_id, day, api_calls, sessions_started) "
            + USER_DAY_FROM_SESSIONS
        )
        return Rebuilt(cursor.rowcount)


def differences() -> list[tuple]:
    """(user_id, day, kept calls, recomputed calls, kept sessions, recomputed sessions) for
    every (user, day) where analytics_user_day and a recomputation disagree; empty when equal.
    What the sync has appended but not folded yet is folded first."""
    fold()
    with connection.cursor() as cursor:
        cursor.execute(DIFFERENCES)
        return cursor.fetchall()
