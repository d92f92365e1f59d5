"""The session tracking designs compared by bench_tracking, as DRF authentication classes.

Every design verifies the JWT the same way (simplejwt) and differs only in what it does next:

* ``untracked`` — simplejwt's JWTStatelessUserAuthentication: no Redis, no SQL (the ceiling).
* ``tracked``   — the project's accounts.authentication.SessionJWTAuthentication, unchanged.
* ``pipeline``  — one Redis pipeline of 4 commands per request (no aggregation).
* ``lua``       — one registered Lua script per request doing the same 4 updates.
* ``pg-hot``, ``pg-1000`` — one PostgreSQL UPDATE of the session's row per request
                  (autocommit: one transaction, one WAL flush per request), as database-backed
                  trackers do; each case has its own table so their bloat is measured apart.

The per-request designs write what the project's session hash needs for a call: the call
count, last activity, the activity index and the dirty mark. They skip the hour bucket and the
session check the tracked design also does, which can only flatter them.
"""

from pathlib import Path

from django.db import connection
from rest_framework_simplejwt.authentication import (
    JWTStatelessUserAuthentication,
)

from accounts.authentication import SessionJWTAuthentication, SessionUser, session_claims
from core import clock
from core.redis import get_redis
from core.rediskeys import keys

PG_TABLES = {"pg-hot": "bench_session_hot", "pg-1000": "bench_session_1000"}


def pg_schema(table: str) -> str:
    """What a Django model ``SessionActivity(sid primary key, user FK, last_active db_index)``
    would create: the primary key, the user's index and the activity index (the counterpart of
    the Redis `idx:last` sorted set, needed to count active sessions)."""
    return f"""
DROP TABLE IF EXISTS {table};
CREATE TABLE {table} (
    sid varchar(64) PRIMARY KEY,
    user_id bigint NOT NULL,
    started_at timestamptz NOT NULL,
    last_active timestamptz NOT NULL,
    api_call_count bigint NOT NULL DEFAULT 0,
    ip varchar(45) NOT NULL DEFAULT '',
    user_agent varchar(512) NOT NULL DEFAULT ''
);
CREATE INDEX {table}_user_id ON {table} (user_id);
CREATE INDEX {table}_last_active ON {table} (last_active);
"""


TRACK_ONE_LUA = (Path(__file__).parent / "lua" / "track_one.lua").read_text()


class _PerRequestTracking(SessionJWTAuthentication):
    """Verify the JWT, read the session claims, then `track()` the call before answering."""

    def authenticate(self, request):
        token = self.bearer_token(request)
        if token is None:
            return None
        sid, user_id = session_claims(token)[:2]
        self.track(sid)
        return SessionUser(user_id, sid), token

    def track(self, sid: str) -> None:
        raise NotImplementedError


class PipelineTracking(_PerRequestTracking):
    def track(self, sid: str) -> None:
        now = clock.now()
        key = keys.session(sid)
        pipe = get_redis().pipeline(transaction=False)
        pipe.hincrby(key, "n", 1)
        pipe.hset(key, "la", repr(now))
        pipe.zadd(keys.active_index(), {sid: now})
        pipe.sadd(keys.dirty(), sid)
        pipe.execute()


class LuaTracking(_PerRequestTracking):
    _script = None

    def track(self, sid: str) -> None:
        script = LuaTracking._script
        if script is None:
            script = LuaTracking._script = get_redis().register_script(TRACK_ONE_LUA)
        script(
            keys=[keys.session(sid), keys.active_index(), keys.dirty()],
            args=[sid, repr(clock.now())],
        )


class PostgresTracking(_PerRequestTracking):
    table = ""

    def track(self, sid: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {self.table} SET api_call_count = api_call_count + 1, "
                "last_active = now() WHERE sid = %s",
                [sid],
            )


class HotPostgresTracking(PostgresTracking):
    table = PG_TABLES["pg-hot"]


class PostgresTracking1000(PostgresTracking):
    table = PG_TABLES["pg-1000"]


DESIGNS = {
    "untracked": JWTStatelessUserAuthentication,
    "tracked": SessionJWTAuthentication,
    "pipeline": PipelineTracking,
    "lua": LuaTracking,
    "pg-hot": HotPostgresTracking,
    "pg-1000": PostgresTracking1000,
}
