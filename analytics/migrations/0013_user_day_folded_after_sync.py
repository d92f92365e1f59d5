"""The sync's share of analytics_user_day is appended as narrow deltas and folded once a run.

Under 0010 each of the sync's transactions (about 20,000 sessions) upserted every (user, day)
it touched into analytics_user_day: with 10,000 users that is 10,000 upserts per transaction,
the same rows again and again in a run of 50 transactions, and most of the rollup's cost (the
sync fell to 0.73-0.78 of its rate without it, bench/README.md). Now:

* in a transaction of the sync (audit.sync sets `sessionhub.bulk_sync` to on, transaction-
  local) the insert and update triggers append the statement's difference per (user, day) to
  analytics_user_day_delta — no index, no conflict check, in the sessions' own transaction:
  they commit together or not at all, exactly once like the sessions;
* at the end of a run (audit.signals.sessions_synced) analytics.rollups.fold moves the deltas
  into analytics_user_day in one transaction (DELETE … RETURNING, summed per (user, day), one
  upsert each): a run of 1M sessions upserts each (user, day) once, not once per transaction;
* every other writer (the timeout job, prune, a user deleted, a session written by hand) is
  applied at once, as under 0010;
* the primary key becomes (day, user_id), and the index by user (user_id, day): the sync
  upserts today's rows, which a key led by the day keeps together at the index's end, where
  (user_id, day) scattered them over one leaf page per user — with 20M sessions kept the
  index outgrew the buffer cache and every sync read and wrote back thousands of its pages
  (bench_sync). Inserting a (user, day) still touches the index by user, once a day; the
  updates that follow touch neither index (heap-only);
* readers that must be exact fold first (rollups.differences, the analytics refresh); a run
  that crashed before its fold leaves deltas the next run (or refresh) folds. TRUNCATE of
  audit_session and rollups.rebuild empty the deltas with the table.
"""

import importlib

from django.db import migrations

m0010 = importlib.import_module("analytics.migrations.0010_user_day_kept_by_sync")

# The statement's difference per (user, day), appended; nothing for a (user, day) it left as
# it was (an end recorded, a session whose counts did not move).
APPEND = """
    INSERT INTO analytics_user_day_delta (user_id, day, api_calls, sessions_started)
    SELECT c.user_id, c.day, sum(c.api_calls)::bigint, sum(c.sessions)::integer
    FROM ({contributions}) c
    GROUP BY c.user_id, c.day
    HAVING sum(c.api_calls) <> 0 OR sum(c.sessions) <> 0;
    RETURN NULL;
"""


def _deferring(contributions: str) -> str:
    """0010's body, preceded by: in a sync transaction, append the difference instead."""
    applied = m0010.APPLY.format(contributions=contributions)
    head, _, rest = applied.partition("BEGIN\n")
    return (
        head
        + "BEGIN\n    IF current_setting('sessionhub.bulk_sync', true) = 'on' THEN"
        + APPEND.format(contributions=contributions)
        + "    END IF;\n"
        + rest
    )


def _function(name: str, body: str) -> str:
    return f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $${body}$$;"


# The deltas summed per (user, day), added in key order (as the triggers do), a (user, day)
# left with nothing removed. Two folds at once: the second's DELETE waits for the rows the
# first holds and skips them once it commits, so each delta is folded once.
FOLD = """
CREATE FUNCTION analytics_user_day_fold() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    folded bigint;
    emptied_users bigint[];
    emptied_days date[];
BEGIN
    WITH moved AS (
        DELETE FROM analytics_user_day_delta
        RETURNING user_id, day, api_calls, sessions_started
    ), summed AS (
        SELECT user_id, day, sum(api_calls)::bigint AS api_calls,
               sum(sessions_started)::integer AS sessions_started, count(*) AS deltas
        FROM moved GROUP BY user_id, day
    ), applied AS (
        INSERT INTO analytics_user_day AS d (user_id, day, api_calls, sessions_started)
        SELECT f.user_id, f.day, f.api_calls, f.sessions_started
        FROM summed f
        ORDER BY f.user_id, f.day
        ON CONFLICT (user_id, day) DO UPDATE SET
            api_calls = d.api_calls + EXCLUDED.api_calls,
            sessions_started = d.sessions_started + EXCLUDED.sessions_started
        WHERE EXCLUDED.api_calls <> 0 OR EXCLUDED.sessions_started <> 0
        RETURNING d.user_id, d.day, d.api_calls, d.sessions_started
    )
    SELECT (SELECT coalesce(sum(deltas), 0) FROM summed),
           array_agg(a.user_id) FILTER (WHERE a.api_calls = 0 AND a.sessions_started = 0),
           array_agg(a.day) FILTER (WHERE a.api_calls = 0 AND a.sessions_started = 0)
    INTO folded, emptied_users, emptied_days
    FROM applied a;
    IF emptied_users IS NOT NULL THEN
        DELETE FROM analytics_user_day d
        USING unnest(emptied_users, emptied_days) AS gone(user_id, day)
        WHERE d.user_id = gone.user_id AND d.day = gone.day
          AND d.api_calls = 0 AND d.sessions_started = 0;
    END IF;
    RETURN folded;
END
$$;
"""

TRUNCATED = """
BEGIN
    TRUNCATE analytics_user_day_delta, analytics_user_day;
    RETURN NULL;
END
"""

KEY_BY_DAY = """
ALTER TABLE analytics_user_day DROP CONSTRAINT analytics_user_day_pk,
    ADD CONSTRAINT analytics_user_day_pk PRIMARY KEY (day, user_id);
DROP INDEX analytics_user_day_day;
CREATE INDEX analytics_user_day_user ON analytics_user_day (user_id, day);
"""
KEY_BY_USER = """
ALTER TABLE analytics_user_day DROP CONSTRAINT analytics_user_day_pk,
    ADD CONSTRAINT analytics_user_day_pk PRIMARY KEY (user_id, day);
DROP INDEX analytics_user_day_user;
CREATE INDEX analytics_user_day_day ON analytics_user_day (day);
"""

FORWARD = "\n".join(
    [
        KEY_BY_DAY,
        """
CREATE TABLE analytics_user_day_delta (
    user_id bigint NOT NULL,
    day date NOT NULL,
    api_calls bigint NOT NULL,
    sessions_started integer NOT NULL
);
""",
        _function("analytics_user_day_sessions_inserted", _deferring(m0010.NEW)),
        _function(
            "analytics_user_day_sessions_updated", _deferring(m0010.NEW + "UNION ALL" + m0010.OLD)
        ),
        _function("analytics_user_day_sessions_truncated", TRUNCATED),
        FOLD,
    ]
)

# Back to 0010: what is not folded yet is folded first.
BACKWARD = "\n".join(
    [
        "SELECT analytics_user_day_fold();",
        _function(
            "analytics_user_day_sessions_inserted", m0010.APPLY.format(contributions=m0010.NEW)
        ),
        _function(
            "analytics_user_day_sessions_updated",
            m0010.APPLY.format(contributions=m0010.NEW + "UNION ALL" + m0010.OLD),
        ),
        _function(
            "analytics_user_day_sessions_truncated",
            "\nBEGIN\n    TRUNCATE analytics_user_day;\n    RETURN NULL;\nEND\n",
        ),
        "DROP FUNCTION analytics_user_day_fold();",
        "DROP TABLE analytics_user_day_delta;",
        KEY_BY_USER,
    ]
)


class Migration(migrations.Migration):
    dependencies = [("analytics", "0012_daily_kept")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
