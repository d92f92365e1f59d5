"""In a bulk sync, a user's last activity reaches analytics_user_stats at the fold, once a run.

Under 0011 every transaction of the sync upserted audit_user_activity for the users of its
sessions, and the trigger on it rewrote their rows of analytics_user_stats at once. A row whose
last_active moves is a new version in every one of the table's seven indexes (last_active is a
key of the idle users' index, so the update is never heap-only), and a run of 50 transactions
over the same 10,000 users rewrote each row up to 50 times, then once more at the fold (the
calls): with every rollup on, the sync ran at 0.57-0.78 of its rate without them (bench_sync).
Now:

* in a transaction of the sync (`sessionhub.bulk_sync` on, as for 0013's deltas) the trigger
  on audit_user_activity appends the users it wrote to analytics_user_activity_delta (one
  narrow column, no index), committed with the sessions or not at all;
* analytics_user_day_fold(), which the end of the run calls (audit.signals.sessions_synced),
  moves them out too and sets each such user's last_active from audit_user_activity, the
  source: idempotent (a user named twice, or whose activity was deleted meanwhile, gets what
  audit_user_activity holds then). In the same row write as the user's calls: while the fold
  upserts analytics_user_day (`sessionhub.folding` on, transaction-local), the trigger that
  adds the days to the figures sets last_active from the source too, so the fold's own update
  of last_active finds those rows done and writes only the users whose calls did not move —
  one write per changed user and run, where there were up to one per transaction plus one;
* every other writer (the timeout job, a row written by hand, a deletion, TRUNCATE) is applied
  at once, as under 0011;
* rollups.rebuild empties these deltas with the others (it recomputes from the source).
"""

import importlib

from django.db import migrations

m0011 = importlib.import_module("analytics.migrations.0011_user_stats_kept")
m0013 = importlib.import_module("analytics.migrations.0013_user_day_folded_after_sync")

_function = m0013._function


ACTIVITY_WRITTEN = m0011.ACTIVITY_APPLY["written"].replace(
    "BEGIN\n",
    """BEGIN
    IF current_setting('sessionhub.bulk_sync', true) = 'on' THEN
        INSERT INTO analytics_user_activity_delta (user_id) SELECT user_id FROM new_activity;
        RETURN NULL;
    END IF;
""",
    1,
)

# After 0013's fold of the per-(user, day) deltas (whose trigger writes the users' calls), the
# users whose activity the sync wrote: last_active from the source, a row left alone when it
# already holds it.
LAST_ACTIVE_FOLD = f"""
    PERFORM pg_advisory_xact_lock_shared({m0011.LOCK});
    WITH moved AS (
        DELETE FROM analytics_user_activity_delta RETURNING user_id
    ), latest AS (
        SELECT m.user_id, a.last_active
        FROM (SELECT DISTINCT user_id FROM moved) m
        LEFT JOIN audit_user_activity a ON a.user_id = m.user_id
    )
    UPDATE analytics_user_stats s SET last_active = l.last_active
    FROM latest l
    WHERE s.user_id = l.user_id AND s.last_active IS DISTINCT FROM l.last_active;
    RETURN folded;"""  # noqa: S608 - built from constants

FOLDING_ON = "BEGIN\n    PERFORM set_config('sessionhub.folding', 'on', true);\n    WITH moved AS ("
FOLDING_OFF = "\n    PERFORM set_config('sessionhub.folding', 'off', true);"
FOLD = (
    m0013.FOLD.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    .replace("BEGIN\n    WITH moved AS (", FOLDING_ON, 1)
    .replace("\n    RETURN folded;", FOLDING_OFF + LAST_ACTIVE_FOLD, 1)
)
if FOLDING_ON not in FOLD or LAST_ACTIVE_FOLD not in FOLD:
    raise RuntimeError("0013's fold is not shaped as this migration expects")

# 0011's trigger adding a statement of analytics_user_day to the figures; in the fold it sets
# the user's last_active from the source in the same write.
FIGURES_SET = (
    "    UPDATE analytics_user_stats s SET\n        api_calls_24h = s.api_calls_24h + p.c24,"
)
LAST_ACTIVE_TOO = (
    "    UPDATE analytics_user_stats s SET\n"
    "        last_active = CASE WHEN current_setting('sessionhub.folding', true) = 'on'\n"
    "            THEN (SELECT a.last_active FROM audit_user_activity a WHERE a.user_id = s.user_id)\n"
    "            ELSE s.last_active END,\n"
    "        api_calls_24h = s.api_calls_24h + p.c24,"
)
if FIGURES_SET not in m0011.DAY_APPLY:
    raise RuntimeError("0011's trigger is not shaped as this migration expects")
DAY_APPLY = m0011.DAY_APPLY.replace(FIGURES_SET, LAST_ACTIVE_TOO, 1)


def _days(day_apply: str) -> list[str]:
    return [
        _function(f"analytics_user_stats_days_{op}", day_apply.format(rows=rows))
        for op, rows in m0011.DAY_ROWS.items()
    ]


FORWARD = "\n".join(
    [
        "CREATE TABLE analytics_user_activity_delta (user_id bigint NOT NULL);",
        _function("analytics_user_stats_activity_written", ACTIVITY_WRITTEN),
        *_days(DAY_APPLY),
        FOLD,
    ]
)

# Back to 0013: what is pending is folded first.
BACKWARD = "\n".join(
    [
        "SELECT analytics_user_day_fold();",
        _function("analytics_user_stats_activity_written", m0011.ACTIVITY_APPLY["written"]),
        *_days(m0011.DAY_APPLY),
        m0013.FOLD.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1),
        "DROP TABLE analytics_user_activity_delta;",
    ]
)


class Migration(migrations.Migration):
    dependencies = [("analytics", "0013_user_day_folded_after_sync")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
