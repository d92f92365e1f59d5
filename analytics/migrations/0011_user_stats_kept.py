"""analytics_user_stats becomes a table kept incrementally: one row per user, an index on each
figure the ranking reports sort on.

Before, analytics_user_stats was a materialized view recomputed from every user's 30 days of
analytics_user_day plus a scan of every session's hours (7 to 9 s at 1M users, every minute), and
the idle users and user activity reports sorted the whole user table per page view (0.7 to 1.2 s).
Now every user has a row of analytics_user_stats (created and deleted with the user) holding:

* ``username`` and ``is_active`` (the account's), and ``last_active`` (audit_user_activity's),
  for the idle users report: index ``(last_active NULLS FIRST, user_id) WHERE is_active``. With
  the username here, each branch of analytics_power_users reads this one table, which lets
  PostgreSQL walk a figure's index for a top N instead of joining every ranked user first;
* ``api_calls_24h``, ``api_calls_7d``, ``api_calls_30d``, ``days_active_7d``,
  ``days_active_30d``: one index each, ``(figure DESC, user_id)``.

How the figures are kept, in the writer's own transaction (statement-level triggers reading the
statement's transition tables, so a sync rolled back changes nothing here either):

* accounts_user: a new user gets its row, a deleted one loses it, ``is_active`` and
  ``username`` follow; the
  count of active users (analytics_user_totals) moves with it — the idle users count is that
  count minus the active users seen within the threshold (a range of the last_active index);
* audit_user_activity (upserted by the sync): ``last_active`` follows;
* analytics_user_day (kept by the sync's triggers on audit_session, migration 0010): each
  statement's difference per (user, day) is added to the windows that contain the day.

The windows are anchored in analytics_user_stats_state: ``day`` (the UTC day the 7 d and 30 d
windows end on) and ``hour_start`` (the first hour of the 24 h window: the current hour's start
minus 23 hours, as the materialized view had it). Time passing moves them in
``analytics_user_stats_roll(now)``, which the refresh job (every minute) calls:

* a day closing: the figures gain the new day's rows of analytics_user_day (those the sync wrote
  since midnight, which the triggers kept out of the windows until then) and lose the rows of the
  days leaving the 7 d and 30 d windows — three days of analytics_user_day read by the index on
  the day, so the cost is the number of users active on those days, never the history;
* the 24 h window (the current hour and the 23 before) covers the anchored day whole and the
  day before from the window's start (``api_calls_24h_day_before``). When a day closes, each
  user's calls per hour of the new day before are computed once from the sessions of that day's
  users (read through the sessions' (user_id, started_at) index) into analytics_user_hour, and
  the figure is recomputed for the users with calls in the window (the others that had any get
  0); each hour after that, the hour leaving the window is subtracted from those buckets — the
  users active in that hour only;
* between two rolls the triggers add a session's calls to the 24 h figure when their day is the
  anchored day or later (every hour of it is inside the window); calls synced late for the day
  before (where the window starts mid-day) refill that user's hour buckets from the sessions and
  move the 24 h figure by the difference in its part of that day.

The roll takes an exclusive advisory lock, every trigger a shared one before it writes a row of
the table: a roll never interleaves with a sync, and a sync waits (at most the roll's time) for a
roll in progress. A roll that would go back in time (a pinned test clock) or forward by more than
30 days (a database restored after a long stop) recomputes everything instead:
``analytics_user_stats_rebuild(now)``, which `manage.py rebuild_rollups` also runs.
"""

import importlib

from django.db import migrations

grafana_0003 = importlib.import_module("analytics.migrations.0003_grafana_role")
user_day_0010 = importlib.import_module("analytics.migrations.0010_user_day_kept_by_sync")

# pg_advisory_xact_lock key of the kept per-user figures ('analytics_user_stats' in spirit).
LOCK = 7_281_101_011

TABLES = """
DROP MATERIALIZED VIEW analytics_user_stats CASCADE;

CREATE TABLE analytics_user_stats (
    user_id bigint PRIMARY KEY,
    username varchar(150) NOT NULL,
    is_active boolean NOT NULL,
    last_active timestamptz,
    api_calls_24h bigint NOT NULL DEFAULT 0,
    api_calls_24h_day_before bigint NOT NULL DEFAULT 0,
    api_calls_7d bigint NOT NULL DEFAULT 0,
    api_calls_30d bigint NOT NULL DEFAULT 0,
    days_active_7d integer NOT NULL DEFAULT 0,
    days_active_30d integer NOT NULL DEFAULT 0
) WITH (fillfactor = 80);
CREATE INDEX analytics_user_stats_idle ON analytics_user_stats (last_active NULLS FIRST, user_id)
    WHERE is_active;
CREATE INDEX analytics_user_stats_24h ON analytics_user_stats (api_calls_24h DESC, user_id);
CREATE INDEX analytics_user_stats_7d ON analytics_user_stats (api_calls_7d DESC, user_id);
CREATE INDEX analytics_user_stats_30d ON analytics_user_stats (api_calls_30d DESC, user_id);
CREATE INDEX analytics_user_stats_days ON analytics_user_stats (days_active_30d DESC, user_id);
CREATE INDEX analytics_user_stats_days_7d ON analytics_user_stats (days_active_7d DESC, user_id);

-- Calls per user and hour of the day before the anchored day (where the 24 h window starts),
-- computed once as that day closes: each hour the window moves, its hour leaving is subtracted.
CREATE TABLE analytics_user_hour (
    user_id bigint NOT NULL,
    hour timestamptz NOT NULL,
    api_calls bigint NOT NULL,
    CONSTRAINT analytics_user_hour_pk PRIMARY KEY (user_id, hour)
);
CREATE INDEX analytics_user_hour_hour ON analytics_user_hour (hour);

-- The windows' anchors (one row).
CREATE TABLE analytics_user_stats_state (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    day date NOT NULL,
    hour_start timestamptz NOT NULL
);
-- The number of active accounts (one row), for the idle users count.
CREATE TABLE analytics_user_totals (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    active_users bigint NOT NULL
);
"""

FUNCTIONS = f"""
-- The first hour of the 24 h window at p_now, and the day the 7 d / 30 d windows end on.
CREATE FUNCTION analytics_window_hour_start(p_now timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT (date_trunc('hour', p_now AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') - interval '23 hours'
$$;

-- (Re)computes the users' hours of p_day from their sessions (read by user).
CREATE FUNCTION analytics_user_hours_fill(p_users bigint[], p_day date) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM analytics_user_hour WHERE user_id = ANY(p_users);
    INSERT INTO analytics_user_hour (user_id, hour, api_calls)
    SELECT x.user_id, to_timestamp(h.key::bigint), sum(h.value::bigint)
    FROM unnest(p_users) u(user_id)
    JOIN audit_session x ON x.user_id = u.user_id
    CROSS JOIN LATERAL jsonb_each_text(x.hourly_calls) h(key, value)
    WHERE x.last_active >= p_day::timestamp AT TIME ZONE 'UTC'
      AND x.started_at < (p_day + 1)::timestamp AT TIME ZONE 'UTC'
      AND h.key::bigint >= extract(epoch FROM p_day::timestamp AT TIME ZONE 'UTC')
      AND h.key::bigint < extract(epoch FROM (p_day + 1)::timestamp AT TIME ZONE 'UTC')
    GROUP BY x.user_id, h.key
    HAVING sum(h.value::bigint) <> 0;
$$;

-- Every user's figures computed from scratch for windows ending on p_day / starting at p_hour.
CREATE FUNCTION analytics_user_stats_computed(p_day date, p_hour_start timestamptz)
RETURNS TABLE (user_id bigint, username varchar(150), is_active boolean,
               last_active timestamptz,
               api_calls_24h bigint, api_calls_24h_day_before bigint, api_calls_7d bigint,
               api_calls_30d bigint, days_active_7d integer, days_active_30d integer)
LANGUAGE sql STABLE AS $$
    SELECT u.id, u.username, u.is_active, a.last_active, coalesce(h.calls, 0)::bigint,
           coalesce(h.before, 0)::bigint, coalesce(d.c7, 0)::bigint, coalesce(d.c30, 0)::bigint,
           coalesce(d.d7, 0)::integer, coalesce(d.d30, 0)::integer
    FROM accounts_user u
    LEFT JOIN audit_user_activity a ON a.user_id = u.id
    LEFT JOIN (
        SELECT ud.user_id,
               sum(ud.api_calls) FILTER (WHERE ud.day > p_day - 7) AS c7,
               sum(ud.api_calls) AS c30,
               count(*) FILTER (WHERE ud.day > p_day - 7) AS d7,
               count(*) AS d30
        FROM analytics_user_day ud
        WHERE ud.day > p_day - 30 AND ud.day <= p_day
        GROUP BY ud.user_id
    ) d ON d.user_id = u.id
    LEFT JOIN (
        SELECT s.user_id, sum(hc.value::bigint) AS calls,
               sum(hc.value::bigint) FILTER (WHERE hc.key::bigint
                   < extract(epoch FROM p_day::timestamp AT TIME ZONE 'UTC')) AS before
        FROM audit_session s CROSS JOIN LATERAL jsonb_each_text(s.hourly_calls) hc(key, value)
        WHERE s.last_active >= p_hour_start AND hc.key::bigint >= extract(epoch FROM p_hour_start)
        GROUP BY s.user_id
    ) h ON h.user_id = u.id
$$;

-- Recompute the whole table for p_now (disaster recovery; a roll back in time or far ahead).
CREATE FUNCTION analytics_user_stats_rebuild(p_now timestamptz) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_day date := (p_now AT TIME ZONE 'UTC')::date;
    v_hour timestamptz := analytics_window_hour_start(p_now);
    v_rows bigint;
BEGIN
    PERFORM pg_advisory_xact_lock({LOCK});
    TRUNCATE analytics_user_stats;
    INSERT INTO analytics_user_stats (user_id, username, is_active, last_active, api_calls_24h,
        api_calls_24h_day_before, api_calls_7d, api_calls_30d, days_active_7d, days_active_30d)
    SELECT * FROM analytics_user_stats_computed(v_day, v_hour);
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    DELETE FROM analytics_user_hour;
    PERFORM analytics_user_hours_fill(
        coalesce((SELECT array_agg(user_id) FROM analytics_user_day WHERE day = v_day - 1), '{{}}'),
        v_day - 1);
    DELETE FROM analytics_user_stats_state;
    INSERT INTO analytics_user_stats_state (day, hour_start) VALUES (v_day, v_hour);
    DELETE FROM analytics_user_totals;
    INSERT INTO analytics_user_totals (active_users)
    SELECT count(*) FROM accounts_user WHERE is_active;
    RETURN v_rows;
END
$$;

-- Move the windows to p_now: what entered and left them since the last roll (see above).
CREATE FUNCTION analytics_user_stats_roll(p_now timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st analytics_user_stats_state;
    v_day date := (p_now AT TIME ZONE 'UTC')::date;
    v_hour timestamptz := analytics_window_hour_start(p_now);
    d date;
    v_users bigint[];
BEGIN
    PERFORM pg_advisory_xact_lock({LOCK});
    SELECT * INTO st FROM analytics_user_stats_state;
    IF st IS NULL OR v_day < st.day OR v_hour < st.hour_start OR v_day - st.day > 30 THEN
        PERFORM analytics_user_stats_rebuild(p_now);
        RETURN 'rebuilt';
    END IF;
    IF v_day = st.day AND v_hour = st.hour_start THEN
        RETURN 'unchanged';
    END IF;
    d := st.day;
    WHILE d < v_day LOOP
        d := d + 1;
        UPDATE analytics_user_stats s SET
            api_calls_7d = s.api_calls_7d + x.c7, api_calls_30d = s.api_calls_30d + x.c30,
            days_active_7d = s.days_active_7d + x.d7,
            days_active_30d = s.days_active_30d + x.d30
        FROM (
            SELECT ud.user_id,
                   sum(CASE WHEN ud.day = d THEN ud.api_calls
                            WHEN ud.day = d - 7 THEN -ud.api_calls ELSE 0 END) AS c7,
                   sum(CASE WHEN ud.day = d THEN ud.api_calls
                            WHEN ud.day = d - 30 THEN -ud.api_calls ELSE 0 END) AS c30,
                   sum(CASE WHEN ud.day = d THEN 1 WHEN ud.day = d - 7 THEN -1 ELSE 0 END) AS d7,
                   sum(CASE WHEN ud.day = d THEN 1 WHEN ud.day = d - 30 THEN -1 ELSE 0 END) AS d30
            FROM analytics_user_day ud
            WHERE ud.day IN (d, d - 7, d - 30)
            GROUP BY ud.user_id
        ) x
        WHERE s.user_id = x.user_id;
    END LOOP;
    IF v_day <> st.day THEN
        -- A day closed: the hours of the new day before, per user, once; then the 24 h window
        -- of every user with calls in it: the anchored day and later whole (analytics_user_day),
        -- the day before from v_hour on (its hours).
        DELETE FROM analytics_user_hour;
        SELECT array_agg(ud.user_id) INTO v_users
        FROM analytics_user_day ud WHERE ud.day = v_day - 1;
        PERFORM analytics_user_hours_fill(coalesce(v_users, '{{}}'), v_day - 1);
        UPDATE analytics_user_stats s SET
            api_calls_24h = x.today + x.before, api_calls_24h_day_before = x.before
        FROM (
            SELECT coalesce(t.user_id, b.user_id) AS user_id, coalesce(t.calls, 0) AS today,
                   coalesce(b.calls, 0) AS before
            FROM (SELECT ud.user_id, sum(ud.api_calls) AS calls FROM analytics_user_day ud
                  WHERE ud.day >= v_day GROUP BY ud.user_id) t
            FULL JOIN (SELECT h.user_id, sum(h.api_calls) AS calls FROM analytics_user_hour h
                       WHERE h.hour >= v_hour GROUP BY h.user_id) b
                ON b.user_id = t.user_id
        ) x
        WHERE s.user_id = x.user_id
          AND (s.api_calls_24h <> x.today + x.before OR s.api_calls_24h_day_before <> x.before);
        UPDATE analytics_user_stats s SET api_calls_24h = 0, api_calls_24h_day_before = 0
        WHERE s.api_calls_24h > 0
          AND NOT EXISTS (SELECT FROM analytics_user_day ud
                          WHERE ud.user_id = s.user_id AND ud.day >= v_day)
          AND NOT EXISTS (SELECT FROM analytics_user_hour h
                          WHERE h.user_id = s.user_id AND h.hour >= v_hour);
    ELSIF v_hour <> st.hour_start THEN
        -- The same day, the window's start moved: the hours that left it, from the buckets.
        UPDATE analytics_user_stats s SET
            api_calls_24h = s.api_calls_24h - x.calls,
            api_calls_24h_day_before = s.api_calls_24h_day_before - x.calls
        FROM (SELECT h.user_id, sum(h.api_calls) AS calls FROM analytics_user_hour h
              WHERE h.hour >= st.hour_start AND h.hour < v_hour GROUP BY h.user_id) x
        WHERE s.user_id = x.user_id AND x.calls <> 0;
    END IF;
    UPDATE analytics_user_stats_state SET day = v_day, hour_start = v_hour;
    RETURN 'rolled';
END
$$;
"""  # noqa: S608 - built from constants

# What a statement on analytics_user_day changed, per (user, day): calls and rows (days active).
DAY_ROWS = {
    "inserted": "SELECT user_id, day, api_calls AS calls, 1 AS present FROM new_days",
    "updated": (
        "SELECT user_id, day, api_calls AS calls, 0 AS present FROM new_days UNION ALL "
        "SELECT user_id, day, -api_calls, 0 FROM old_days"
    ),
    "deleted": "SELECT user_id, day, -api_calls AS calls, -1 AS present FROM old_days",
}

# Adds a statement's difference to the windows that hold its days (as anchored), in the
# statement's transaction. Calls on the anchored day or later are all inside the 24 h window;
# calls on the day before may fall on either side of its start: those users' part of the 24 h
# window on that day (api_calls_24h_day_before) is recomputed from their sessions, and the 24 h
# figure moves by its difference. Older days are outside the 24 h window. Every change is a
# difference, never an overwrite: the INSERT and UPDATE triggers of one upsert (0010's) may fire
# in either order and still add up.
DAY_APPLY = f"""
DECLARE
    st analytics_user_stats_state;
    v_users bigint[];
BEGIN
    PERFORM pg_advisory_xact_lock_shared({LOCK});
    SELECT * INTO st FROM analytics_user_stats_state;
    IF st IS NULL THEN
        RETURN NULL;
    END IF;
    UPDATE analytics_user_stats s SET
        api_calls_24h = s.api_calls_24h + p.c24,
        api_calls_7d = s.api_calls_7d + p.c7, api_calls_30d = s.api_calls_30d + p.c30,
        days_active_7d = s.days_active_7d + p.d7, days_active_30d = s.days_active_30d + p.d30
    FROM (
        SELECT c.user_id,
               coalesce(sum(c.calls) FILTER (WHERE c.day >= st.day), 0) AS c24,
               coalesce(sum(c.calls) FILTER (WHERE c.day > st.day - 7 AND c.day <= st.day), 0)
                   AS c7,
               coalesce(sum(c.calls) FILTER (WHERE c.day <= st.day), 0) AS c30,
               coalesce(sum(c.present) FILTER (WHERE c.day > st.day - 7 AND c.day <= st.day), 0)
                   AS d7,
               coalesce(sum(c.present) FILTER (WHERE c.day <= st.day), 0) AS d30
        FROM ({{rows}}) c
        WHERE c.day > st.day - 30
        GROUP BY c.user_id
    ) p
    WHERE s.user_id = p.user_id
      AND (p.c24 <> 0 OR p.c7 <> 0 OR p.c30 <> 0 OR p.d7 <> 0 OR p.d30 <> 0);
    SELECT array_agg(DISTINCT c.user_id) INTO v_users FROM ({{rows}}) c WHERE c.day = st.day - 1;
    IF v_users IS NOT NULL THEN
        PERFORM analytics_user_hours_fill(v_users, st.day - 1);
        UPDATE analytics_user_stats s SET
            api_calls_24h = s.api_calls_24h + c.calls - s.api_calls_24h_day_before,
            api_calls_24h_day_before = c.calls
        FROM (SELECT u.user_id, coalesce(sum(h.api_calls), 0) AS calls
              FROM unnest(v_users) u(user_id)
              LEFT JOIN analytics_user_hour h
                     ON h.user_id = u.user_id AND h.hour >= st.hour_start
              GROUP BY u.user_id) c
        WHERE s.user_id = c.user_id AND s.api_calls_24h_day_before <> c.calls;
    END IF;
    RETURN NULL;
END
"""  # noqa: S608 - built from constants

ACTIVITY_APPLY = {
    "written": f"""
BEGIN
    PERFORM pg_advisory_xact_lock_shared({LOCK});
    UPDATE analytics_user_stats s SET last_active = n.last_active
    FROM new_activity n
    WHERE s.user_id = n.user_id AND s.last_active IS DISTINCT FROM n.last_active;
    RETURN NULL;
END
""",  # noqa: S608 - built from constants
    "deleted": f"""
BEGIN
    PERFORM pg_advisory_xact_lock_shared({LOCK});
    UPDATE analytics_user_stats s SET last_active = NULL
    WHERE s.user_id IN (SELECT o.user_id FROM old_activity o) AND s.last_active IS NOT NULL;
    RETURN NULL;
END
""",  # noqa: S608 - built from constants
    "truncated": f"""
BEGIN
    PERFORM pg_advisory_xact_lock_shared({LOCK});
    UPDATE analytics_user_stats SET last_active = NULL WHERE last_active IS NOT NULL;
    RETURN NULL;
END
""",  # noqa: S608 - built from constants
}

USER_APPLY = {
    "inserted": f"""
DECLARE
    v_active bigint;
BEGIN
    PERFORM pg_advisory_xact_lock_shared({LOCK});
    INSERT INTO analytics_user_stats (user_id, username, is_active, last_active)
    SELECT n.id, n.username, n.is_active, a.last_active
    FROM new_users n LEFT JOIN audit_user_activity a ON a.user_id = n.id
    ON CONFLICT (user_id) DO UPDATE
    SET username = EXCLUDED.username, is_active = EXCLUDED.is_active;
    SELECT count(*) INTO v_active FROM new_users WHERE is_active;
    IF v_active > 0 THEN
        UPDATE analytics_user_totals SET active_users = active_users + v_active;
    END IF;
    RETURN NULL;
END
""",  # noqa: S608 - built from constants
    # Django saves every field of a user at each login (last_login): only a changed is_active
    # or username writes here, found by primary key (never a join the planner could turn into
    # a scan).
    "updated": f"""
DECLARE
    v_on bigint[];
    v_off bigint[];
    v_ids bigint[];
    v_names text[];
BEGIN
    SELECT array_agg(id) FILTER (WHERE is_active), array_agg(id) FILTER (WHERE NOT is_active),
           array_agg(id), array_agg(username)
    INTO v_on, v_off, v_ids, v_names
    FROM (SELECT id, is_active, username FROM new_users
          EXCEPT SELECT id, is_active, username FROM old_users) c;
    IF v_ids IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock_shared({LOCK});
    FOR i IN 1 .. array_length(v_ids, 1) LOOP
        UPDATE analytics_user_stats SET username = v_names[i]
        WHERE user_id = v_ids[i] AND username IS DISTINCT FROM v_names[i];
    END LOOP;
    WITH changed AS (
        UPDATE analytics_user_stats SET is_active = true
        WHERE user_id = ANY(coalesce(v_on, '{{}}')) AND NOT is_active RETURNING 1
    ) UPDATE analytics_user_totals SET active_users = active_users + (SELECT count(*) FROM changed);
    WITH changed AS (
        UPDATE analytics_user_stats SET is_active = false
        WHERE user_id = ANY(coalesce(v_off, '{{}}')) AND is_active RETURNING 1
    ) UPDATE analytics_user_totals SET active_users = active_users - (SELECT count(*) FROM changed);
    RETURN NULL;
END
""",  # noqa: S608 - built from constants
    "deleted": f"""
BEGIN
    PERFORM pg_advisory_xact_lock_shared({LOCK});
    WITH gone AS (
        DELETE FROM analytics_user_stats s
        WHERE s.user_id IN (SELECT o.id FROM old_users o) RETURNING s.is_active
    ) UPDATE analytics_user_totals
      SET active_users = active_users - (SELECT count(*) FROM gone WHERE is_active);
    RETURN NULL;
END
""",  # noqa: S608 - built from constants
    "truncated": f"""
BEGIN
    PERFORM pg_advisory_xact_lock_shared({LOCK});
    TRUNCATE analytics_user_stats;
    UPDATE analytics_user_totals SET active_users = 0;
    RETURN NULL;
END
""",  # noqa: S608 - built from constants
}

DAY_TRUNCATED = f"""
BEGIN
    PERFORM pg_advisory_xact_lock_shared({LOCK});
    DELETE FROM analytics_user_hour;
    UPDATE analytics_user_stats SET api_calls_24h = 0, api_calls_24h_day_before = 0,
        api_calls_7d = 0, api_calls_30d = 0,
        days_active_7d = 0, days_active_30d = 0
    WHERE api_calls_24h <> 0 OR api_calls_7d <> 0 OR api_calls_30d <> 0
       OR days_active_7d <> 0 OR days_active_30d <> 0;
    RETURN NULL;
END
"""  # noqa: S608 - built from constants


def _function(name: str, body: str) -> str:
    return f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $${body}$$;\n"


TRIGGERS = (
    "".join(
        _function(f"analytics_user_stats_days_{op}", DAY_APPLY.format(rows=rows))
        for op, rows in DAY_ROWS.items()
    )
    + _function("analytics_user_stats_days_truncated", DAY_TRUNCATED)
    + "".join(
        _function(f"analytics_user_stats_activity_{op}", body)
        for op, body in ACTIVITY_APPLY.items()
    )
    + "".join(
        _function(f"analytics_user_stats_users_{op}", body) for op, body in USER_APPLY.items()
    )
    + """
CREATE TRIGGER analytics_user_stats_inserted AFTER INSERT ON analytics_user_day
    REFERENCING NEW TABLE AS new_days
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_user_stats_days_inserted();
CREATE TRIGGER analytics_user_stats_updated AFTER UPDATE ON analytics_user_day
    REFERENCING OLD TABLE AS old_days NEW TABLE AS new_days
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_user_stats_days_updated();
CREATE TRIGGER analytics_user_stats_deleted AFTER DELETE ON analytics_user_day
    REFERENCING OLD TABLE AS old_days
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_user_stats_days_deleted();
CREATE TRIGGER analytics_user_stats_truncated AFTER TRUNCATE ON analytics_user_day
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_user_stats_days_truncated();

CREATE TRIGGER analytics_user_stats_inserted AFTER INSERT ON audit_user_activity
    REFERENCING NEW TABLE AS new_activity
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_user_stats_activity_written();
CREATE TRIGGER analytics_user_stats_updated AFTER UPDATE ON audit_user_activity
    REFERENCING NEW TABLE AS new_activity
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_user_stats_activity_written();
CREATE TRIGGER analytics_user_stats_deleted AFTER DELETE ON audit_user_activity
    REFERENCING OLD TABLE AS old_activity
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_user_stats_activity_deleted();
CREATE TRIGGER analytics_user_stats_truncated AFTER TRUNCATE ON audit_user_activity
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_user_stats_activity_truncated();

CREATE TRIGGER analytics_user_stats_inserted AFTER INSERT ON accounts_user
    REFERENCING NEW TABLE AS new_users
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_user_stats_users_inserted();
CREATE TRIGGER analytics_user_stats_updated AFTER UPDATE ON accounts_user
    REFERENCING OLD TABLE AS old_users NEW TABLE AS new_users
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_user_stats_users_updated();
CREATE TRIGGER analytics_user_stats_deleted AFTER DELETE ON accounts_user
    REFERENCING OLD TABLE AS old_users
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_user_stats_users_deleted();
CREATE TRIGGER analytics_user_stats_truncated AFTER TRUNCATE ON accounts_user
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_user_stats_users_truncated();
"""
)

# The views that read the figures, now over the table (analytics/sql/*.sql).
VIEWS = """
CREATE VIEW analytics_user_activity AS
 SELECT s.user_id,
    s.username,
    u.email,
    u.is_active,
    u.date_joined,
    a.first_active,
    s.last_active,
    s.api_calls_24h,
    s.api_calls_7d,
    s.api_calls_30d,
    s.days_active_30d,
        CASE
            WHEN s.last_active IS NULL THEN 'inactive'::text
            ELSE analytics_session_status(s.last_active)
        END AS status,
    s.last_active IS NULL AS never_active
   FROM analytics_user_stats s
     LEFT JOIN accounts_user u ON u.id = s.user_id
     LEFT JOIN audit_user_activity a ON a.user_id = s.user_id;

-- Each branch reads the table alone and the filter on the window's rows stands outside the
-- UNION ALL: PostgreSQL then flattens the branches and, for a window's top N, walks the index of
-- its figure (a filter inside a branch would have it plan the branch apart: every ranked user
-- sorted before the LIMIT).
CREATE VIEW analytics_power_users AS
 SELECT p.id,
    p."window",
    p.user_id,
    p.username,
    p.api_calls,
    p.days_active_30d,
    p.last_active
   FROM ( SELECT '24h:'::text || s.user_id AS id,
            '24h'::text AS "window",
            s.user_id,
            s.username,
            s.api_calls_24h AS api_calls,
            s.days_active_30d,
            s.last_active
           FROM analytics_user_stats s
        UNION ALL
         SELECT '7d:'::text || s.user_id AS id,
            '7d'::text AS "window",
            s.user_id,
            s.username,
            s.api_calls_7d AS api_calls,
            s.days_active_30d,
            s.last_active
           FROM analytics_user_stats s
        UNION ALL
         SELECT '30d:'::text || s.user_id AS id,
            '30d'::text AS "window",
            s.user_id,
            s.username,
            s.api_calls_30d AS api_calls,
            s.days_active_30d,
            s.last_active
           FROM analytics_user_stats s) p
  WHERE
        CASE p."window"
            WHEN '30d'::text THEN p.days_active_30d > 0
            ELSE p.api_calls > 0
        END;

DROP VIEW analytics_idle_users;
CREATE VIEW analytics_idle_users AS
 SELECT s.user_id,
    s.username,
    u.email,
    u.date_joined,
    s.last_active,
        CASE
            WHEN s.last_active IS NULL THEN NULL::integer
            ELSE floor(EXTRACT(epoch FROM analytics_now() - s.last_active) / 86400::numeric)::integer
        END AS idle_days,
    s.last_active IS NULL AS never_active
   FROM analytics_user_stats s
     LEFT JOIN accounts_user u ON u.id = s.user_id
  WHERE s.is_active AND (s.last_active IS NULL OR s.last_active <= (analytics_now() - make_interval(days => analytics_setting_value('idle_user_days'::text, 7))));

CREATE VIEW analytics_idle_user_count AS
 SELECT t.active_users - r.recent AS idle_users,
    t.active_users - r.seen AS never_active
   FROM analytics_user_totals t,
    ( SELECT count(*) FILTER (WHERE s.last_active > (( SELECT analytics_now() - make_interval(days => analytics_setting_value('idle_user_days'::text, 7))))) AS recent,
            count(*) AS seen
           FROM analytics_user_stats s
          WHERE s.is_active AND s.last_active IS NOT NULL) r;
"""

FORWARD = TABLES + FUNCTIONS + TRIGGERS + VIEWS

TRIGGER_FUNCTIONS = [
    *(f"analytics_user_stats_days_{op}" for op in (*DAY_ROWS, "truncated")),
    *(f"analytics_user_stats_activity_{op}" for op in ACTIVITY_APPLY),
    *(f"analytics_user_stats_users_{op}" for op in USER_APPLY),
]

OLD_IDLE_USERS = """
CREATE VIEW analytics_idle_users AS
 SELECT u.id AS user_id,
    u.username,
    u.email,
    u.date_joined,
    a.last_active,
        CASE
            WHEN a.last_active IS NULL THEN NULL::integer
            ELSE floor(EXTRACT(epoch FROM analytics_now() - a.last_active) / 86400::numeric)::integer
        END AS idle_days,
    a.last_active IS NULL AS never_active
   FROM accounts_user u
     LEFT JOIN audit_user_activity a ON a.user_id = u.id
  WHERE u.is_active AND (a.last_active IS NULL OR a.last_active <= (analytics_now() - make_interval(days => analytics_setting_value('idle_user_days'::text, 7))));
"""

BACKWARD = (
    "DROP VIEW analytics_idle_user_count, analytics_idle_users, analytics_user_activity, "
    "analytics_power_users;\n"
    + "".join(f"DROP FUNCTION {name}() CASCADE;\n" for name in TRIGGER_FUNCTIONS)
    + """
DROP FUNCTION analytics_user_stats_roll(timestamptz);
DROP FUNCTION analytics_user_stats_rebuild(timestamptz);
DROP FUNCTION analytics_user_stats_computed(date, timestamptz);
DROP FUNCTION analytics_user_hours_fill(bigint[], date);
DROP FUNCTION analytics_window_hour_start(timestamptz);
DROP TABLE analytics_user_stats, analytics_user_stats_state, analytics_user_totals,
    analytics_user_hour;
"""
    + user_day_0010.DEPENDENTS.split("CREATE MATERIALIZED VIEW analytics_daily")[0]
    + "CREATE VIEW analytics_user_activity"
    + user_day_0010.DEPENDENTS.split("CREATE VIEW analytics_user_activity")[1].replace(
        "CREATE UNIQUE INDEX analytics_daily_pk ON analytics_daily (day);", ""
    )
    + OLD_IDLE_USERS
    + "REFRESH MATERIALIZED VIEW analytics_user_stats;"
)

# Grafana's role reads the table as it read the materialized view (the views over it and over
# the state and totals tables run with their owner's rights).
GRANT_TABLES = f"GRANT SELECT ON analytics_user_stats TO {grafana_0003.ROLE}"


def backward(apps, schema_editor) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(BACKWARD)
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [grafana_0003.ROLE])
        if cursor.fetchone():
            grafana_0003.grant_read(cursor)


def forward(apps, schema_editor) -> None:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(FORWARD)
        cursor.execute("SELECT analytics_user_stats_rebuild(analytics_now())")
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [grafana_0003.ROLE])
        if cursor.fetchone():
            grafana_0003.grant_read(cursor)
            cursor.execute(GRANT_TABLES)


class Migration(migrations.Migration):
    dependencies = [("analytics", "0010_user_day_kept_by_sync")]

    operations = [migrations.RunPython(forward, backward)]
