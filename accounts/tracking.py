"""Per-process session tracking: the request path costs no Redis round trip in the common case.

Every web process keeps

* **pending counts** — API calls per (session, hour) since the last flush. A background thread
  sends them every TRACKING_FLUSH_INTERVAL (100 ms) as *one* Lua call for all sessions, the way
  API gateways keep rate-limit counters. Each batch carries this process's sequence number and
  the script skips a number it has applied already, so a batch whose reply was lost is retried
  without being counted twice.
* **last activity** — of each session this process served. A request needs no Redis read:
  its session is live unless it is in the recently-ended set (below), past its absolute
  timeout (the token carries its start), or idle — judged from the later of this process's
  last call and the activity the token carries (`sla`, stamped at login and refresh). Only
  when that looks idle is Redis asked (another process may have served the session since).
* **recently ended sessions** — filled at once by this process's own ends, by pub/sub from the
  other processes, and reloaded from Redis on every (re)connect and every
  ENDED_RELOAD_SECONDS (in case a message was lost), so an ended session is refused on the
  next request whichever process serves it. A valid access token is at most
  ACCESS_TOKEN_LIFETIME old and a refresh checks Redis, so a session whose access token still
  works cannot have ended earlier than that: the set stays small.

Redis away: requests are served on the signature-verified JWT alone, counts wait in memory
(bounded) and go out when Redis answers again; a failed attempt is counted in
`tracking_errors` and Redis is not asked again for a second, so an outage costs no latency.

What a `kill -9` of a web worker can lose: the calls counted since its last flush (at most
~100 ms of its traffic) and whatever it held back during a Redis outage. A graceful stop
(SIGTERM, gunicorn's worker exit, interpreter exit) flushes first.
"""

import atexit
import contextlib
import logging
import os
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from enum import Enum

import redis
from django.conf import settings

from sessionhub import clock
from sessionhub.conf import get_settings
from sessionhub.redis import REDIS_UNAVAILABLE, get_redis
from sessionhub.rediskeys import keys

from . import livesessions
from .events import EndReason

logger = logging.getLogger(__name__)

MAX_LAST_SEEN = 200_000
MAX_DEFERRED_EVENTS = 100_000
MAX_PENDING_SESSIONS = 200_000
REDIS_RETRY_SECONDS = 1.0
FLUSH_SEQUENCE_TTL = 24 * 3600


class Verdict(Enum):
    OK = "ok"
    ENDED = "ended"


@dataclass(slots=True)
class _Pending:
    user_id: int
    started_at: float
    ip: str
    user_agent: str
    calls: int = 0
    last: float = 0.0


@dataclass(slots=True)
class _Batch:
    sequence: int
    entries: list
    stats: dict
    events: list
    ends: list = field(default_factory=list)


class Tracker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self._pid: int | None = None
        self._threads: list[threading.Thread] = []
        self._reset_state()

    def _reset_state(self) -> None:
        self._process_id = uuid.uuid4().hex
        self._sequence = 0
        # (sid, user id, hour): a token naming another user's session is counted apart, so that
        # the flush can refuse it without touching the owner's counts.
        self._pending: dict[tuple[str, int, int], _Pending] = {}
        self._stats: Counter[str] = Counter()
        self._deferred_events: deque[str] = deque()
        self._deferred_ends: list[tuple] = []
        self._inflight: _Batch | None = None
        self._last_seen: dict[str, float] = {}
        self._ended: dict[str, float] = {}
        self._foreign: dict[tuple[str, int], float] = {}  # (sid, another user's id) → until
        self._redis_retry_at = 0.0
        self._next_prune = 0.0
        self._subscribed = threading.Event()

    # --- life cycle ------------------------------------------------------------------------

    def ensure_started(self) -> None:
        """Start the flusher and the revocation listener once per process (fork-safe)."""
        if self._pid == os.getpid():
            return
        with self._start_lock:
            if self._pid == os.getpid():
                return
            if self._pid is not None:  # forked from a process that had started: start afresh
                self._lock = threading.Lock()
                self._reset_state()
            self._stop = threading.Event()
            self._threads = [
                threading.Thread(target=self._flush_loop, name="session-flush", daemon=True),
                threading.Thread(target=self._listen_loop, name="session-revoked", daemon=True),
            ]
            for thread in self._threads:
                thread.start()
            self._pid = os.getpid()
            atexit.register(self.shutdown)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Flush what is pending and stop the threads (graceful worker stop)."""
        if self._pid != os.getpid():
            return
        self._stop.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._redis_retry_at = 0.0
            if self.flush() and not self.has_pending():
                break
            time.sleep(0.1)
        if self.has_pending():
            logger.error("session tracking: pending counts could not be flushed at shutdown")
        self._pid = None

    def reset(self) -> None:
        """Forget everything this process knows (tests; after a Redis FLUSHDB)."""
        with self._lock:
            self._reset_state()

    # --- request path ----------------------------------------------------------------------

    def authorize(
        self,
        *,
        sid: str,
        user_id: int,
        started_at: float,
        ip: str,
        user_agent: str,
        last_active_hint: float | None = None,
    ) -> Verdict:
        """Check the session is live and count the call. No Redis read unless it looks idle."""
        self.ensure_started()
        conf = get_settings()
        now = clock.now()
        if sid in self._ended or (self._foreign and (sid, user_id) in self._foreign):
            return Verdict.ENDED
        if now - started_at >= conf.ABSOLUTE_TIMEOUT:
            self.end(
                sid=sid,
                reason=EndReason.ABSOLUTE_TIMEOUT,
                ended_at=started_at + conf.ABSOLUTE_TIMEOUT,
            )
            return Verdict.ENDED
        last = max(self._last_seen.get(sid, 0.0), last_active_hint or started_at)
        if now - last >= conf.IDLE_TIMEOUT and self._idle_in_redis(sid, now) is Verdict.ENDED:
            return Verdict.ENDED
        self._record(sid, user_id, started_at, ip, user_agent, now)
        return Verdict.OK

    def _idle_in_redis(self, sid: str, now: float) -> Verdict:
        """The session looks idle from here: ask Redis, and end it if it really is."""
        if not self._redis_usable(now):
            return Verdict.OK
        try:
            pipe = get_redis().pipeline(transaction=False)
            pipe.hmget(keys.session(sid), livesessions.SESSION_FIELDS)
            pipe.zscore(keys.ended_index(), sid)
            values, ended_score = pipe.execute()
        except REDIS_UNAVAILABLE:
            self._redis_failed(now, "session check")
            return Verdict.OK
        session = livesessions.parse_session(sid, values)
        if ended_score is not None or (session is not None and session.is_ended):
            self.mark_ended(sid)
            return Verdict.ENDED
        idle = get_settings().IDLE_TIMEOUT
        if session is not None and now - session.last_active >= idle:
            result = self.end(
                sid=sid, reason=EndReason.IDLE_TIMEOUT, ended_at=now, idle_timeout=idle
            )
            if result != 2:  # 2: a call from another process made it active after all
                return Verdict.ENDED
        return Verdict.OK

    def _record(self, sid, user_id, started_at, ip, user_agent, now) -> None:
        hour = livesessions.hour_of(now)
        with self._lock:
            entry = self._pending.get((sid, user_id, hour))
            if entry is None:
                if len(self._pending) >= MAX_PENDING_SESSIONS:
                    self._stats["tracking_dropped"] += 1
                    return
                entry = self._pending[(sid, user_id, hour)] = _Pending(
                    user_id, started_at, ip, user_agent
                )
            entry.calls += 1
            entry.last = now
            self._last_seen[sid] = now

    # --- ending sessions -------------------------------------------------------------------

    def end(
        self,
        *,
        sid: str,
        reason: EndReason,
        ended_at: float,
        actor_id: int | None = None,
        idle_timeout: int | None = None,
    ) -> int:
        """End a session in Redis and refuse it here at once. Redis away: retried on flush."""
        self._flush_pending_for(sid)
        try:
            result = livesessions.end(
                sid=sid,
                reason=reason,
                ended_at=ended_at,
                actor_id=actor_id,
                idle_timeout=idle_timeout,
            )
        except REDIS_UNAVAILABLE:
            self._redis_failed(clock.now(), "session end")
            with self._lock:
                self._deferred_ends.append((sid, reason, ended_at, actor_id))
            result = 1
        if result != 2:
            self.mark_ended(sid)
        return result

    def _flush_pending_for(self, sid: str) -> None:
        """Calls made before the end must be counted before the end freezes the session."""
        with self._lock:
            has_pending = any(key[0] == sid for key in self._pending)
        if has_pending:
            self.flush()

    def mark_ended(self, sid: str) -> None:
        keep = settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds() + 120
        with self._lock:
            self._ended[sid] = clock.now() + keep
            self._last_seen.pop(sid, None)

    def defer_event(self, payload: str) -> None:
        with self._lock:
            if len(self._deferred_events) >= MAX_DEFERRED_EVENTS:
                self._deferred_events.popleft()
                self._stats["events_dropped"] += 1
            self._deferred_events.append(payload)
            self._stats["tracking_errors"] += 1

    def defer_start(self, *, sid, user_id, started_at, ip, user_agent, login_event) -> None:
        """Login while Redis is away: the session is opened by the next flush that gets through."""
        with self._lock:
            self._pending.setdefault(
                (sid, user_id, livesessions.hour_of(started_at)),
                _Pending(user_id, started_at, ip, user_agent, calls=0, last=started_at),
            )
            self._deferred_events.append(login_event)
            self._stats["tracking_errors"] += 1
            self._stats["sessions_started"] += 1

    # --- flushing --------------------------------------------------------------------------

    def has_pending(self) -> bool:
        with self._lock:
            return bool(
                self._inflight
                or self._pending
                or self._deferred_events
                or self._deferred_ends
                or self._stats
            )

    def _redis_usable(self, now: float) -> bool:
        return now >= self._redis_retry_at

    def _redis_failed(self, now: float, what: str) -> None:
        self._redis_retry_at = now + REDIS_RETRY_SECONDS
        with self._lock:
            self._stats["tracking_errors"] += 1
        logger.warning("session tracking: redis unavailable during %s", what)

    def _take_batch(self) -> _Batch | None:
        with self._lock:
            if self._inflight is not None:
                return self._inflight
            if not (self._pending or self._deferred_events or self._stats or self._deferred_ends):
                return None
            entries = [
                (sid, p.user_id, p.started_at, p.ip, p.user_agent, hour, p.calls, p.last)
                for (sid, _, hour), p in self._pending.items()
            ]
            self._sequence += 1
            batch = _Batch(
                self._sequence,
                entries,
                dict(self._stats),
                list(self._deferred_events),
                list(self._deferred_ends),
            )
            self._pending, self._stats = {}, Counter()
            self._deferred_events, self._deferred_ends = deque(), []
            self._inflight = batch
            return batch

    def flush(self) -> bool:
        """Send what is pending (a batch retried after an outage, then the newer counts).

        True when everything pending at the call has reached Redis.
        """
        for _ in range(3):
            with self._lock:
                retrying = self._inflight is not None
            if not self._send_batch():
                return False
            if not retrying:
                return True
        return True

    def _send_batch(self) -> bool:
        now = clock.now()
        if not self._redis_usable(now):
            return False
        batch = self._take_batch()
        if batch is None:
            return True
        conf = get_settings()
        args = [
            keys.session_prefix(),
            keys.user_sessions(""),
            batch.sequence,
            FLUSH_SEQUENCE_TTL,
            conf.EVENT_STREAM_MAXLEN,
            len(batch.entries),
            len(batch.stats),
            len(batch.events),
        ]
        for sid, uid, started, ip, ua, hour, calls, last in batch.entries:
            args += [sid, uid, repr(started), ip, ua, hour, calls, repr(last)]
        for name, value in batch.stats.items():
            args += [name, value]
        args += batch.events
        try:
            client = get_redis()
            flush_keys = [
                keys.active_index(),
                keys.started_index(),
                keys.dirty(),
                keys.stats(),
                keys.events(),
                keys.flush_sequence(self._process_id),
            ]
            flush = livesessions.script("track_flush")
            if not batch.ends:
                # The usual flush: one EVALSHA, one round trip. (A pipeline would add a
                # SCRIPT EXISTS round trip before every execute.)
                try:
                    results = [flush(keys=flush_keys, args=args, client=client)]
                except redis.ResponseError as exc:
                    results = [exc]
            else:
                pipe = client.pipeline(transaction=False)
                flush(keys=flush_keys, args=args, client=pipe)
                for sid, reason, ended_at, actor_id in batch.ends:
                    livesessions.end(
                        sid=sid, reason=reason, ended_at=ended_at, actor_id=actor_id, client=pipe
                    )
                results = pipe.execute(raise_on_error=False)
        except REDIS_UNAVAILABLE:
            self._redis_failed(now, "flush")
            return False
        reply = results[0]
        if isinstance(reply, list) and len(reply) == 2 and reply[1]:
            self._refuse_foreign(reply[1])
        errors = [result for result in results if isinstance(result, Exception)]
        if errors:
            # A script error is a bug, not an outage: retrying would repeat it forever.
            logger.error("session tracking: flush batch rejected by redis: %r", errors[0])
        with self._lock:
            self._inflight = None
        return True

    def _refuse_foreign(self, flat: list) -> None:
        """Tokens that name another user's session (reported by the flush) are refused."""
        until = clock.now() + settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds()
        with self._lock:
            for sid, uid in zip(flat[::2], flat[1::2], strict=True):
                self._foreign[(sid.decode(), int(uid))] = until

    def _flush_loop(self) -> None:
        interval = get_settings().TRACKING_FLUSH_INTERVAL
        while not self._stop.wait(interval):
            try:
                self.flush()
                self._expire_local(clock.now())
            except Exception:  # the flusher must never die
                logger.exception("session tracking: flush failed")

    def _expire_local(self, now: float) -> None:
        idle = get_settings().IDLE_TIMEOUT
        with self._lock:
            for sid in [sid for sid, until in self._ended.items() if until < now]:
                del self._ended[sid]
            for pair in [pair for pair, until in self._foreign.items() if until < now]:
                del self._foreign[pair]
            if len(self._last_seen) > MAX_LAST_SEEN or now >= self._next_prune:
                self._last_seen = {s: t for s, t in self._last_seen.items() if now - t < idle}
                self._next_prune = now + 60

    # --- revocations from other processes --------------------------------------------------

    def _listen_loop(self) -> None:
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = get_redis().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(keys.revocations_channel())
                # Subscribe first, then reload: nothing ended in between can be missed.
                self._reload_ended()
                self._subscribed.set()
                reload_every = get_settings().ENDED_RELOAD_SECONDS
                next_reload = time.monotonic() + reload_every
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        self.mark_ended(message["data"].decode())
                    if time.monotonic() >= next_reload:
                        self._reload_ended()
                        next_reload = time.monotonic() + reload_every
            except REDIS_UNAVAILABLE:
                self._subscribed.clear()
                self._stop.wait(REDIS_RETRY_SECONDS)
            except Exception:
                logger.exception("session tracking: revocation listener failed")
                self._subscribed.clear()
                self._stop.wait(REDIS_RETRY_SECONDS)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):  # closing a broken connection
                        pubsub.close()

    def _reload_ended(self) -> None:
        keep = settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds() + 120
        now = clock.now()
        recent = livesessions.recently_ended(now - keep)
        with self._lock:
            for sid in recent:
                self._ended[sid] = now + keep
                self._last_seen.pop(sid, None)

    def wait_subscribed(self, timeout: float = 5.0) -> bool:
        self.ensure_started()
        return self._subscribed.wait(timeout)


tracker = Tracker()
