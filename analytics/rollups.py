"""The rollups the sync keeps as it writes sessions, and their rebuild from scratch.

analytics_user_day — API calls and sessions started per user per UTC day — is changed by
triggers on audit_session (analytics/migrations/0010_user_day_kept_by_sync.py) in the very
statement that changes the sessions, so it commits with the sync's rows or not at all. In the
sync's own transactions the triggers append the difference per (user, day) to
analytics_user_day_delta instead (0013_user_day_folded_after_sync.py), and `fold` adds those
deltas to the table once the run has committed (audit.signals.sessions_synced): each (user,
day) is upserted once per run, not once per transaction.

analytics_user_stats — one row per user: the account's is_active, its last activity, API calls
in the last 24 h, 7 d and 30 d, days active in 7 d and 30 d, each figure with an index for the
reports that rank users (analytics/migrations/0011_user_stats_kept.py) — is changed by triggers
on accounts_user, audit_user_activity and analytics_user_day, in the writer's transaction too.
Rolling windows as time passes, without rescanning history (`roll`, every minute from the
refresh job):

* the 7 d and 30 d windows end on an anchored UTC day; when a day closes, each figure gains the
  new day's rows of analytics_user_day and loses those of the days that left the windows: three
  days read by the index on the day, so the users active on those days, once per day;
* the 24 h window starts at the anchored hour (the current hour minus 23, as before): the
  triggers add calls of the anchored day or later (inside the window whatever the hour) as the
  sync writes them. The day before the anchored day is kept per user and hour
  (analytics_user_hour), computed once as that day closes from its users' sessions; each hour
  the window moves, the hour leaving it is subtracted from those buckets (the users active in
  that hour). Calls synced late for the day before refill the users' buckets.

What is kept incrementally must equal what a recomputation gives: `rebuild` is that
recomputation (disaster recovery: a restored backup, a rollup damaged by hand), and
`differences` / `stats_differences` say where the kept tables and a recomputation disagree.
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


# The kept per-user figures against their recomputation for the anchored windows.
STATS_COLUMNS = (
    "username, is_active, last_active, api_calls_24h, api_calls_24h_day_before, api_calls_7d, "
    "api_calls_30d, days_active_7d, days_active_30d"
)
STATS_DIFFERENCES = f"""
    SELECT coalesce(k.user_id, r.user_id), ROW(k.*)::text, ROW(r.*)::text
    FROM (SELECT user_id, {STATS_COLUMNS} FROM analytics_user_stats) k
    FULL JOIN (SELECT c.* FROM analytics_user_stats_state st,
               LATERAL analytics_user_stats_computed(st.day, st.hour_start) c) r
         ON r.user_id = k.user_id
    WHERE ROW(k.*) IS DISTINCT FROM ROW(r.*)
    UNION ALL
    SELECT coalesce(k.user_id, r.user_id), 'hour ' || ROW(k.*)::text, 'hour ' || ROW(r.*)::text
    FROM analytics_user_hour k
    FULL JOIN (
        SELECT s.user_id, to_timestamp(h.key::bigint) AS hour, sum(h.value::bigint) AS api_calls
        FROM analytics_user_stats_state st, audit_session s
             CROSS JOIN LATERAL jsonb_each_text(s.hourly_calls) h(key, value)
        WHERE s.user_id IS NOT NULL
          AND to_timestamp(h.key::bigint) >= (st.day - 1)::timestamp AT TIME ZONE 'UTC'
          AND to_timestamp(h.key::bigint) < st.day::timestamp AT TIME ZONE 'UTC'
        GROUP BY 1, 2 HAVING sum(h.value::bigint) <> 0
    ) r ON r.user_id = k.user_id AND r.hour = k.hour
    WHERE ROW(k.*) IS DISTINCT FROM ROW(r.*)
    UNION ALL
    SELECT NULL, 'active_users ' || t.active_users,
           'active_users ' || (SELECT count(*) FROM accounts_user WHERE is_active)
    FROM analytics_user_totals t
    WHERE t.active_users <> (SELECT count(*) FROM accounts_user WHERE is_active)
    ORDER BY 1
"""  # noqa: S608 - built from constants


def fold() -> int:
    """Add the deltas the sync appended to analytics_user_day, and set the last activity of the
    users it wrote in analytics_user_stats (migration 0014), in one transaction; returns how
    many per-(user, day) deltas were folded. Safe to run at any time, and twice at once (each
    delta is folded once)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT analytics_user_day_fold()")
        return cursor.fetchone()[0]


def fold_after_sync(**kwargs) -> None:
    """Receiver of audit.signals.sessions_synced."""
    fold()


@dataclass(frozen=True)
class Rebuilt:
    rows: int
    users: int = 0


def rebuild() -> Rebuilt:
    """Recompute analytics_user_day from audit_session, then analytics_user_stats from both, in
    one transaction.

    The deltas not folded yet go with it (the recomputation counts their sessions). TRUNCATE
    takes the tables' exclusive locks first, the deltas' before the table's as a fold takes
    them (so the two cannot deadlock): a sync or a fold that has already written to them
    commits before (and the recomputation sees its sessions); one that writes later waits for
    this commit and then adds its difference on top. Either way nothing counts twice. The per-user
    figures' rebuild takes their exclusive advisory lock, which every trigger writing them waits
    for; their windows are anchored at analytics_now().
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE analytics_user_day_delta, analytics_user_day, analytics_user_activity_delta"
        )
        # analytics_user_stats is recomputed below: its triggers on analytics_user_day would add
        # every row once more first. Disabled within this transaction only (which TRUNCATE has
        # already made the table's only user); no other session ever sees them off.
        cursor.execute("ALTER TABLE analytics_user_day DISABLE TRIGGER USER")
        cursor.execute(
            "INSERT INTO analytics_user_day (user_id, day, api_calls, sessions_started) "
            + USER_DAY_FROM_SESSIONS
        )
        rows = cursor.rowcount
        cursor.execute("ALTER TABLE analytics_user_day ENABLE TRIGGER USER")
        cursor.execute("SELECT analytics_user_stats_rebuild(analytics_now())")
        (users,) = cursor.fetchone()
        return Rebuilt(rows, users)


def roll() -> str:
    """Move analytics_user_stats' windows to analytics_now(): 'unchanged' within the same hour,
    'rolled' (what entered and left the windows), or 'rebuilt' (back in time, or > 30 days on)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT analytics_user_stats_roll(analytics_now())")
        return cursor.fetchone()[0]


def daily_refresh() -> None:
    """Recompute today's row of analytics_daily (the anchored day's): that day's rows only; the
    WAU and MAU from the kept per-user days active. Past days were stored as they closed."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT analytics_daily_refresh()")


def stats_differences() -> list[tuple]:
    """(user_id, kept row, recomputed row) for every user whose kept figures differ from their
    recomputation for the anchored windows (and the active users' count, user_id None); empty
    when equal. What the sync has appended but not folded yet is folded first."""
    fold()
    with connection.cursor() as cursor:
        cursor.execute(STATS_DIFFERENCES)
        return cursor.fetchall()


def differences() -> list[tuple]:
    """(user_id, day, kept calls, recomputed calls, kept sessions, recomputed sessions) for
    every (user, day) where analytics_user_day and a recomputation disagree; empty when equal.
    What the sync has appended but not folded yet is folded first."""
    fold()
    with connection.cursor() as cursor:
        cursor.execute(DIFFERENCES)
        return cursor.fetchall()
