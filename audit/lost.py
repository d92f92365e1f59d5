"""PostgreSQL agrees with Redis: sessions it holds as open that Redis has lost are closed `lost`.

Redis is the truth of live sessions, and PostgreSQL learns that a session ended from Redis (the
sync). When Redis loses a session — a restart without persistence, a FLUSHDB, a fail-over to
an empty replica, a key evicted or deleted — nothing would ever tell PostgreSQL, and the
session stayed open there for good: counted by the overview, listed open by the session
history, while the live sessions (read from Redis) no longer showed it.

Rule: a session PostgreSQL holds as open is closed with end reason `lost` (ended now, a
`session_expired` event with reason `lost`) when Redis does not know it and it is past its
idle or absolute timeout by PostgreSQL's figures, plus `grace` (two sync intervals and a few
seconds: the calls Redis counted but had not synced when it lost them). Before that, its
client may still come back: a web process then rebuilds the session in Redis from the token
(a new generation), as after any loss. So a session Redis knows is never closed as lost, nor
one used within its idle timeout. Should a client come back after all (a refresh token lives
up to the absolute timeout), the sync reopens the row: a newer generation replaces a `lost`
end (audit.sync, SESSION_MERGE).

Cost — no scan of the open sessions per sync:

* `sessions_lost_close` runs at the end of every sync, under its lock. Usually it costs one
  Redis round trip (SET NX of the "swept" marker, which fails) and a ZRANGEBYSCORE on an
  empty set: no SQL.
* A sweep compares every session PostgreSQL holds as open with Redis: one SELECT over the
  partial index of open sessions, then EXISTS in pipelines of `batch` sessions. It runs when
  the marker is missing — at once after Redis lost its data (the marker went with it), else
  once per SWEEP_INTERVAL (its TTL), which catches sessions lost one at a time.
* Sessions a sweep finds missing but not yet due wait in a sorted set scored by when they are
  due; each sync checks the due ones again with EXISTS and closes those still unknown.
"""

import logging
from dataclasses import dataclass

from django.db import connection, transaction

from accounts.events import END_EVENT_TYPE, EndReason
from core import clock
from core.conf import get_settings
from core.redis import get_redis
from core.rediskeys import keys

logger = logging.getLogger(__name__)

SWEEP_INTERVAL = 3600
GRACE_SECONDS = 5.0

# A page of open sessions after a position, in the order of the partial index of open
# sessions (audit_session_open_started): memory stays bounded whatever their number.
OPEN_SESSIONS = """
SELECT sid, started_at, extract(epoch FROM started_at)::float8,
       extract(epoch FROM last_active)::float8
FROM audit_session
WHERE ended_at IS NULL AND (started_at, sid) > (%s, %s) AND user_id %% %s = %s
ORDER BY started_at, sid
LIMIT %s
"""
BEFORE_ALL = ("-infinity", "")

# The timeouts are checked again against the row as it is now: a session the sync wrote
# meanwhile (its client came back) stays open.
CLOSE_LOST = """
WITH closed AS (
    UPDATE audit_session s SET ended_at = %(now)s, end_reason = %(reason)s
    WHERE s.sid = ANY(%(sids)s) AND s.ended_at IS NULL
      AND (s.last_active < %(idle_cutoff)s OR s.started_at < %(absolute_cutoff)s)
    RETURNING s.sid, s.user_id
)
INSERT INTO audit_event (stream_id, event_type, user_id, username, ip, user_agent, session_id,
                         reason, actor_id, occurred_at)
SELECT 'lost-' || left(md5(c.sid), 27), %(event_type)s, u.id, '', NULL, '', c.sid, %(reason)s,
       NULL, %(now)s
FROM closed c LEFT JOIN accounts_user u ON u.id = c.user_id
ON CONFLICT (stream_id, occurred_at) DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class LostResult:
    closed: int
    swept: bool
    suspects: int  # missing from Redis, not due yet


def grace() -> float:
    return GRACE_SECONDS + 2 * get_settings().SYNC_INTERVAL


def _due_at(started: float, last_active: float) -> float:
    conf = get_settings()
    return min(last_active + conf.IDLE_TIMEOUT, started + conf.ABSOLUTE_TIMEOUT) + grace()


def _known(client, sids: list[str], shard: int) -> list[bool]:
    pipe = client.pipeline(transaction=False)
    for sid in sids:
        pipe.exists(keys.session(sid, shard))
    return [bool(found) for found in pipe.execute()]


def _close(client, sids: list[str], now: float, shard: int) -> int:
    if not sids:
        return 0
    conf = get_settings()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            CLOSE_LOST,
            {
                "sids": sids,
                "now": clock.to_datetime(now),
                "reason": str(EndReason.LOST),
                "event_type": str(END_EVENT_TYPE[EndReason.LOST]),
                "idle_cutoff": clock.to_datetime(now - conf.IDLE_TIMEOUT - grace()),
                "absolute_cutoff": clock.to_datetime(now - conf.ABSOLUTE_TIMEOUT - grace()),
            },
        )
        closed = cursor.rowcount
    if closed:
        client.hincrby(keys.stats(shard), f"sessions_ended:{EndReason.LOST}", closed)
        logger.warning("closed %d sessions Redis no longer knew as lost", closed)
    return closed


def _sweep(client, now: float, batch: int, shard: int) -> tuple[int, int]:
    closed = waiting = 0
    position = BEFORE_ALL
    while True:
        with connection.cursor() as cursor:
            cursor.execute(OPEN_SESSIONS, [*position, keys.shard_count, shard, batch])
            chunk = cursor.fetchall()
        if not chunk:
            return closed, waiting
        position = (chunk[-1][1], chunk[-1][0])
        known = _known(client, [row[0] for row in chunk], shard)
        missing = [row for row, found in zip(chunk, known, strict=True) if not found]
        due_at = {sid: _due_at(started, last) for sid, _, started, last in missing}
        closed += _close(client, [sid for sid, at in due_at.items() if at <= now], now, shard)
        later = {sid: at for sid, at in due_at.items() if at > now}
        if later:
            client.zadd(keys.lost_suspects(shard), later)
            waiting += len(later)
        if len(chunk) < batch:
            return closed, waiting


def _close_due_suspects(client, now: float, batch: int, shard: int) -> int:
    closed = 0
    while True:
        due = client.zrangebyscore(keys.lost_suspects(shard), "-inf", now, start=0, num=batch)
        if not due:
            return closed
        sids = [sid.decode() for sid in due]
        known = _known(client, sids, shard)
        closed += _close(
            client, [s for s, found in zip(sids, known, strict=True) if not found], now, shard
        )
        client.zrem(keys.lost_suspects(shard), *sids)
        if len(sids) < batch:
            return closed


def sessions_lost_close(
    *, now: float | None = None, batch: int = 1000, shard: int = 0
) -> LostResult:
    """Close as `lost` the sessions of `shard` (user id % shards) PostgreSQL holds as open
    that Redis has lost (see above). Idempotent; runs under the shard's sync lock, so no sync
    writes one of its sessions meanwhile."""
    client = get_redis()
    now = clock.now() if now is None else now
    closed = waiting = 0
    swept = bool(client.set(keys.lost_swept(shard), repr(now), nx=True, ex=SWEEP_INTERVAL))
    if swept:
        try:
            closed, waiting = _sweep(client, now, batch, shard)
        except BaseException:
            client.delete(keys.lost_swept(shard))  # unfinished: the next run sweeps again
            raise
    closed += _close_due_suspects(client, now, batch, shard)
    return LostResult(closed, swept, waiting)
