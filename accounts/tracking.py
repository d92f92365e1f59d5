"""Per-process session tracking: the request path costs no Redis round trip in the common case.

Every web process keeps

* **pending counts** — API calls per (session, minute) since the last flush. A background thread
  sends them every TRACKING_FLUSH_INTERVAL (100 ms) as *one* Lua call for all sessions, the way
  API gateways keep rate-limit counters. Each batch carries this process's sequence number and
  the script skips a number it has applied already, so a batch whose reply was lost is retried
  without being counted twice.
* **the client's fingerprint** — its /24 (IPv4) or /64 (IPv6) network and a digest of its user
  agent go with each count. The flush script keeps the session's last fingerprint in its hash
  and compares (no extra round trip): a session used from another network AND another user
  agent within SESSION_ANOMALY_WINDOW is a stolen token's signal. It writes a
  `session_anomaly` event and counts it; with SESSION_ANOMALY_ACTION=end this process then
  ends the session.
* **last activity** — of each session this process served. A request needs no Redis read:
  its session is live unless it is in the recently-ended set (below), past its absolute
  timeout (the token carries its start), or idle — judged from the later of this process's
  last call and the activity the token carries (`sla`, stamped at login and refresh). Only
  when that looks idle is Redis asked (another process may have served the session since).
* **recently ended sessions** — filled at once by this process's own ends, by pub/sub from the
  other processes, and reloaded from Redis on every (re)connect and every
  ENDED_RELOAD_SECONDS (in case a message was lost). A valid access token is at most
  ACCESS_TOKEN_LIFETIME old and a refresh checks Redis, so a session whose access token still
  works cannot have ended earlier than that: the set stays small.

An ended session is refused on the client's next request, whichever process serves it:

* an end (logout, revocation, password change, …) returns only once every subscribed process
  has acknowledged it (`confirm_ended`: PUBLISH says how many processes heard it, each one
  pushes an acknowledgement, the ender waits for them, at most REVOCATION_ACK_TIMEOUT);
* a process that is not subscribed, or has not loaded the ended set since it subscribed (a
  worker just forked, a listener reconnecting), asks Redis about each session it serves until
  it has. gunicorn's `post_worker_init` loads the set before a worker serves anything, so a
  fresh worker normally pays nothing. When Redis does not answer, the designed "Redis down"
  state applies: the signature-verified JWT is served.

Redis away: requests are served on the signature-verified JWT alone, counts wait in memory
(bounded) and go out when Redis answers again; a failed attempt is counted in
`tracking_errors` and Redis is not asked again for a second, so an outage costs no latency.

What a `kill -9` of a web worker can lose: the calls counted since its last flush (at most
~100 ms of its traffic) and whatever it held back during a Redis outage. A graceful stop
(SIGTERM, gunicorn's worker exit, interpreter exit) flushes first.
"""

import atexit
import contextlib
import hashlib
import ipaddress
import logging
import os
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings

from core import clock, lua
from core.conf import get_settings
from core.redis import REDIS_UNAVAILABLE, get_redis, is_cluster, relearn_slots
from core.rediskeys import keys

from . import livesessions
from .events import EndReason, session_anomaly_template

logger = logging.getLogger(__name__)

MAX_LAST_SEEN = 200_000
MAX_DEFERRED_EVENTS = 100_000
MAX_PENDING_SESSIONS = 200_000
REDIS_RETRY_SECONDS = 1.0
FLUSH_SEQUENCE_TTL = 24 * 3600
# How long a new web process waits for the ended sessions before it serves (post_worker_init).
READY_TIMEOUT = 5.0
SUBSCRIBE_TIMEOUT = 5.0
# Past a failed attempt of the listener, Redis is taken as down until its next attempt is over
# (its pause plus a connect timeout): meanwhile no request waits on Redis.
LISTENER_DOWN_SECONDS = REDIS_RETRY_SECONDS + 1.0
ACK_TTL = 60
# Each user's API calls per minute over the last hour (the per-user page's live chart), kept by
# the flush script in a ring of this many per-minute slots; the key outlives its newest
# minute by the ring's span (plus a minute's margin), then expires.
CALLS_PER_MINUTE_SLOTS = 60
CALLS_PER_MINUTE_TTL = CALLS_PER_MINUTE_SLOTS * 60 + 60
# Every process judges these from the token and its own clock: no process needs telling.
LOCAL_REASONS = frozenset({EndReason.IDLE_TIMEOUT, EndReason.ABSOLUTE_TIMEOUT})


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
        self._new_listener_state()
        self._reset_state()

    def _new_listener_state(self) -> None:
        # Set while the listener is subscribed and has loaded the ended sessions since.
        self._subscribed = threading.Event()
        # Set once the listener's first attempt is over, whatever its outcome.
        self._listen_tried = threading.Event()

    def _reset_state(self) -> None:
        self._process_id = uuid.uuid4().hex
        self._sequence = 0
        # Per (session, user id, minute, client ip, user agent): a token naming another user's
        # session is counted apart, so that the flush can refuse it without touching the
        # owner's counts; a second client of one session keeps an entry of its own, so the
        # flush script sees both fingerprints.
        self._pending: dict[tuple[str, int, int, str, str], _Pending] = {}
        self._stats: Counter[str] = Counter()
        self._deferred_events: deque[str] = deque()
        self._deferred_ends: list[tuple] = []
        self._inflight: _Batch | None = None
        self._last_seen: dict[str, float] = {}
        self._ended: dict[str, float] = {}
        self._foreign: dict[tuple[str, int], float] = {}  # (sid, another user's id) → until
        self._redis_retry_at = 0.0
        self._relearn = False
        self._next_prune = 0.0
        self._to_end: list[tuple[str, int]] = []

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
            self._new_listener_state()
            # Each thread gets its own stop event: threads of an earlier start never revive.
            self._stop = stop = threading.Event()
            self._threads = [
                threading.Thread(
                    target=self._flush_loop, args=(stop,), name="session-flush", daemon=True
                ),
                threading.Thread(
                    target=self._listen_loop, args=(stop,), name="session-revoked", daemon=True
                ),
            ]
            for thread in self._threads:
                thread.start()
            self._pid = os.getpid()
            atexit.register(self.shutdown)

    def start(self, timeout: float = READY_TIMEOUT) -> bool:
        """Start, and wait (bounded) until the ended sessions are loaded: a web process calls
        it before serving its first request. False when Redis did not answer in time; the
        process then serves as in a Redis outage, or asks Redis per session once it answers."""
        self.ensure_started()
        self._listen_tried.wait(timeout)
        return self._subscribed.is_set()

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
                user_id=user_id,
            )
            return Verdict.ENDED
        last = max(self._last_seen.get(sid, 0.0), last_active_hint or started_at)
        looks_idle = now - last >= conf.IDLE_TIMEOUT
        # Not subscribed, or the ended sessions not loaded since: an end may have been missed.
        unsure = not self._subscribed.is_set()
        if (looks_idle or unsure) and self._check_in_redis(sid, user_id, now) is Verdict.ENDED:
            return Verdict.ENDED
        self._record(sid, user_id, started_at, ip, user_agent, now)
        return Verdict.OK

    def _check_in_redis(self, sid: str, user_id: int, now: float) -> Verdict:
        """This process cannot tell: ask Redis whether the session ended or is idle (and end
        it then). Redis away: OK, the designed state of an outage."""
        if not self._redis_usable(now):
            return Verdict.OK
        shard = keys.shard_of(user_id)
        try:
            pipe = get_redis().pipeline(transaction=False)
            pipe.hmget(keys.session(sid, shard), livesessions.SESSION_FIELDS)
            pipe.zscore(keys.ended_index(shard), sid)
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
                sid=sid,
                reason=EndReason.IDLE_TIMEOUT,
                ended_at=now,
                idle_timeout=idle,
                user_id=user_id,
            )
            if result != 2:  # 2: a call from another process made it active after all
                return Verdict.ENDED
        return Verdict.OK

    def _record(self, sid, user_id, started_at, ip, user_agent, now) -> None:
        minute = livesessions.minute_of(now)
        with self._lock:
            key = (sid, user_id, minute, ip, user_agent)
            entry = self._pending.get(key)
            if entry is None:
                if len(self._pending) >= MAX_PENDING_SESSIONS:
                    self._stats["tracking_dropped"] += 1
                    return
                entry = self._pending[key] = _Pending(user_id, started_at, ip, user_agent)
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
        user_id: int | None = None,
        shard: int | None = None,
    ) -> int:
        """End a session in Redis and refuse it here at once; return once every web process
        refuses it too (see confirm_ended). Redis away: retried on flush. `user_id` (the
        session's owner) or `shard` names its shard; without either the shards are asked."""
        self._flush_pending_for(sid)
        try:
            if shard is None:
                shard = livesessions.shard_for(sid, user_id)
            result = livesessions.end(
                sid=sid,
                reason=reason,
                ended_at=ended_at,
                actor_id=actor_id,
                idle_timeout=idle_timeout,
                shard=shard,
            )
        except REDIS_UNAVAILABLE:
            self._redis_failed(clock.now(), "session end")
            with self._lock:
                self._deferred_ends.append((sid, reason, ended_at, actor_id, user_id, shard))
            self.mark_ended(sid)
            return 1
        if result != 2:
            self.mark_ended(sid)
        if result == 1 and reason not in LOCAL_REASONS:
            self.confirm_ended([sid])
        return result

    def confirm_ended(self, sids: list[str]) -> bool:
        """Return once every subscribed web process has these sessions in its ended set.

        The end script's own message may be read by a process only after the client's next
        request has reached it. So the sids go out once more, on a channel whose subscribers
        acknowledge; PUBLISH says how many heard them, and this waits for as many
        acknowledgements (at most REVOCATION_ACK_TIMEOUT: a stalled process must not hold a
        logout forever). A process that was not subscribed is not counted and needs no
        telling: until it has subscribed and reloaded, it asks Redis about each session.
        True when every process acknowledged in time.
        """
        if not sids:
            return True
        timeout = get_settings().REVOCATION_ACK_TIMEOUT
        nonce = uuid.uuid4().hex
        ack_key = keys.revocation_ack(nonce)
        received = expected = 0
        try:
            client = get_redis()
            expected = _publish_confirm(client, " ".join([nonce, *sids]))
            deadline = time.monotonic() + timeout
            while received < expected:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                # Each wait stays well under the client's socket timeout.
                reply = client.blmpop(
                    max(min(left, 1.0), 0.01),
                    1,
                    ack_key,
                    direction="LEFT",
                    count=expected - received,
                )
                if reply:
                    received += len(reply[1])
        except REDIS_UNAVAILABLE:
            self._redis_failed(clock.now(), "end confirmation")
            return False
        if received < expected:
            logger.warning(
                "session end: %d of %d web processes did not acknowledge within %.1f s",
                expected - received,
                expected,
                timeout,
            )
            return False
        return True

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
                (sid, user_id, livesessions.minute_of(started_at), ip, user_agent),
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
        # On a Redis Cluster a master may be failing over: the flusher thread asks the cluster
        # for the slots' owners again (never the request path: that may take a connect
        # timeout per node).
        self._relearn = True
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
                (sid, p.user_id, p.started_at, p.ip, p.user_agent, minute, p.calls, p.last)
                for (sid, _, minute, _, _), p in self._pending.items()
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
        try:
            for _ in range(3):
                with self._lock:
                    retrying = self._inflight is not None
                if not self._send_batch():
                    return False
                if not retrying:
                    return True
            return True
        finally:
            if self._to_end:
                self._end_anomalies()

    def _send_batch(self) -> bool:
        now = clock.now()
        if not self._redis_usable(now):
            return False
        batch = self._take_batch()
        if batch is None:
            return True
        calls = self._shard_calls(batch, now)
        try:
            client = get_redis()
            flush = livesessions.script("track_flush")
            if len(calls) == 1 and not batch.ends:
                # The usual flush on one shard: one EVALSHA, one round trip. (A pipeline
                # would add a SCRIPT EXISTS round trip before every execute.)
                try:
                    results = [flush(keys=calls[0][1], args=calls[0][2], client=client)]
                except redis.ResponseError as exc:
                    results = [exc]
                unavailable = [r for r in results if isinstance(r, REDIS_UNAVAILABLE)]
                if unavailable:
                    raise unavailable[0]
            else:
                # One call per shard the batch touches, in one pipeline (on a cluster, one
                # per master).
                script_calls: list[lua.Call] = [
                    (flush, flush_keys, args) for _, flush_keys, args in calls
                ]
                for sid, reason, ended_at, actor_id, user_id, shard in batch.ends:
                    if shard is None:
                        shard = livesessions.shard_for(sid, user_id)
                    script_calls.append(
                        livesessions.end_call(
                            sid=sid,
                            reason=reason,
                            ended_at=ended_at,
                            actor_id=actor_id,
                            shard=shard,
                        )
                    )
                results = lua.run(script_calls, raise_on_error=False)
                # A shard whose node is away: the whole batch stays in flight and is sent
                # again; the shards that applied it skip it then (their sequence has it).
                unavailable = [r for r in results if isinstance(r, REDIS_UNAVAILABLE)]
                if unavailable:
                    raise unavailable[0]
        except REDIS_UNAVAILABLE:
            self._redis_failed(now, "flush")
            return False
        foreign: list = []
        anomalies: list[tuple[str, int]] = []
        for (shard, _, _), reply in zip(calls, results, strict=False):
            # {total, [sid, uid, …] of foreign tokens, [sid, …] used from two places at
            # once}; {-1} for a batch already applied.
            if isinstance(reply, list) and len(reply) == 3:
                foreign += reply[1]
                anomalies += [(sid.decode(), shard) for sid in reply[2]]
        if foreign:
            self._refuse_foreign(foreign)
        errors = [result for result in results if isinstance(result, Exception)]
        if errors:
            # A script error is a bug, not an outage: retrying would repeat it forever.
            logger.error("session tracking: flush batch rejected by redis: %r", errors[0])
        with self._lock:
            # Only the batch this call sent: under threaded workers another thread may have
            # applied it already (a repeat returns -1) and taken the next batch meanwhile,
            # which must stay in flight until its own send succeeds.
            if self._inflight is batch:
                self._inflight = None
            if anomalies and get_settings().ANOMALY_ACTION == "end":
                self._to_end.extend(anomalies)
        return True

    def _shard_calls(self, batch: _Batch, now: float) -> list[tuple[int, list, list]]:
        """The batch as one track_flush call (keys, args) per shard it touches: the entries
        by their user's shard; the process's counters and held-back events with shard 0's."""
        conf = get_settings()
        by_shard: dict[int, list] = {}
        for entry in batch.entries:
            by_shard.setdefault(keys.shard_of(entry[1]), []).append(entry)
        if batch.stats or batch.events or not by_shard:
            by_shard.setdefault(0, [])
        calls = []
        for shard, entries in sorted(by_shard.items()):
            stats = batch.stats if shard == 0 else {}
            held = batch.events if shard == 0 else []
            args: list[Any] = [
                keys.session_prefix(shard),
                keys.user_sessions_prefix(shard),
                batch.sequence,
                FLUSH_SEQUENCE_TTL,
                conf.EVENT_STREAM_MAXLEN,
                len(entries),
                len(stats),
                len(held),
                conf.ANOMALY_WINDOW,
                session_anomaly_template(),
                keys.user_calls_per_minute_prefix(shard),
                CALLS_PER_MINUTE_SLOTS,
                CALLS_PER_MINUTE_TTL,
            ]
            for sid, uid, started, ip, ua, minute, calls_, last in entries:
                args += [sid, uid, repr(started), ip, ua, minute, calls_, repr(last)]
                args.append(fingerprint(ip, ua))
            for name, value in stats.items():
                args += [name, value]
            args += held
            flush_keys = [
                keys.active_index(shard),
                keys.started_index(shard),
                keys.dirty(shard),
                keys.stats(shard),
                keys.events(shard),
                keys.flush_sequence(self._process_id, shard),
                keys.per_minute("api_calls", int(now // 60), shard),
            ]
            calls.append((shard, flush_keys, args))
        return calls

    def _end_anomalies(self) -> None:
        """SESSION_ANOMALY_ACTION=end: end the sessions the last flushes found used from two
        places at once. Outside the flush itself: an end flushes, and waits for the others."""
        with self._lock:
            sids, self._to_end = self._to_end, []
        for sid, shard in sids:
            self.end(sid=sid, reason=EndReason.ANOMALY, ended_at=clock.now(), shard=shard)

    def _refuse_foreign(self, flat: list) -> None:
        """Tokens that name another user's session (reported by the flush) are refused."""
        until = clock.now() + settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds()
        with self._lock:
            for sid, uid in zip(flat[::2], flat[1::2], strict=True):
                self._foreign[(sid.decode(), int(uid))] = until

    def _flush_loop(self, stop: threading.Event) -> None:
        interval = get_settings().TRACKING_FLUSH_INTERVAL
        while not stop.wait(interval):
            try:
                self.flush()
                if self._relearn:
                    self._relearn = False
                    relearn_slots()
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

    def _listen_loop(self, stop: threading.Event) -> None:
        quick_retry_after = 0.0
        while not stop.is_set():
            pubsub = None
            subscribed_at = None
            try:
                client = get_redis()
                channel = keys.revocations_channel().encode()
                confirm = _confirm_channel(client).encode()
                pubsub = client.pubsub()
                pubsub.subscribe(channel, confirm)
                # Subscribed for certain (the server has confirmed both channels), then
                # reload: nothing ended in between can be missed.
                early = _await_confirmation(pubsub, "subscribe", 2)
                self._reload_ended()
                for message in early:
                    self._on_message(message, channel, confirm)
                self._redis_retry_at = 0.0  # Redis answers: no need to wait for a flush
                self._subscribed.set()
                self._listen_tried.set()
                subscribed_at = time.monotonic()
                reload_every = get_settings().ENDED_RELOAD_SECONDS
                next_reload = time.monotonic() + reload_every
                while not stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message:
                        self._on_message(message, channel, confirm)
                    if time.monotonic() >= next_reload:
                        self._reload_ended()
                        next_reload = time.monotonic() + reload_every
                # Stopping: PUBLISH counts this process until the server has taken it off the
                # channels, and enders wait for its acknowledgement of what it was counted for.
                pubsub.unsubscribe()
                for message in _await_confirmation(pubsub, "unsubscribe", 2):
                    self._on_message(message, channel, confirm)
            except REDIS_UNAVAILABLE:
                relearn_slots()  # a cluster's master gone: subscribe through its successor
                if subscribed_at is not None and time.monotonic() >= quick_retry_after:
                    # A subscription lost (Redis restarting, or only this connection dropped):
                    # reconnect at once, at most once a second; meanwhile requests ask Redis.
                    quick_retry_after = time.monotonic() + REDIS_RETRY_SECONDS
                    self._subscribed.clear()
                    continue
                # Redis is down until the next attempt says otherwise: meanwhile requests are
                # served on their JWT without waiting on Redis (the flush logs the outage).
                # Not on a Redis Cluster: one master failing says nothing of the others, whose
                # shards keep being flushed to (each call finds out for itself).
                if not settings.REDIS_CLUSTER_NODES:
                    self._redis_retry_at = max(
                        self._redis_retry_at, clock.now() + LISTENER_DOWN_SECONDS
                    )
            except Exception:
                logger.exception("session tracking: revocation listener failed")
            finally:
                self._subscribed.clear()
                self._listen_tried.set()
                if pubsub is not None:
                    with contextlib.suppress(Exception):  # closing a broken connection
                        pubsub.close()
            stop.wait(REDIS_RETRY_SECONDS)

    def _on_message(self, message: dict, channel: bytes, confirm: bytes) -> None:
        if message.get("type") != "message":
            return
        if message["channel"] == confirm:
            self._acknowledge(message["data"])
        elif message["channel"] == channel:
            self.mark_ended(message["data"].decode())

    def _acknowledge(self, data: bytes) -> None:
        """Ended sessions whose ender waits (confirm_ended): refuse them, then say so."""
        nonce, *sids = data.decode().split(" ")
        for sid in sids:
            self.mark_ended(sid)
        pipe = get_redis().pipeline(transaction=False)
        pipe.rpush(keys.revocation_ack(nonce), 1)
        pipe.expire(keys.revocation_ack(nonce), ACK_TTL)
        pipe.execute()

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


def fingerprint(ip: str, user_agent: str) -> str:
    """A client as the anomaly check compares it: '<network> <user-agent digest>', '' when
    there is no address to be had (nothing is compared then)."""
    network = _network(ip)
    return f"{network} {_user_agent_digest(user_agent)}" if network else ""


@lru_cache(maxsize=65536)
def _network(ip: str) -> str:
    """/24 for IPv4, /64 for IPv6: a client moving within its network is the same client."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


@lru_cache(maxsize=4096)
def _user_agent_digest(user_agent: str) -> str:
    """A short digest: the session hash keeps this, not a second copy of the user agent."""
    return hashlib.blake2b(user_agent.encode(), digest_size=8).hexdigest()


def _confirm_channel(client) -> str:
    if is_cluster(client):  # one database
        return keys.revocation_confirm_channel(0)
    return keys.revocation_confirm_channel(client.connection_pool.connection_kwargs.get("db", 0))


def _publish_confirm(client, message: str) -> int:
    """PUBLISH on the confirmation channel; the number of processes that heard it.

    On a Redis Cluster a message reaches the subscribers of every node, but PUBLISH counts
    only those of the node it ran on: every web process subscribes through the node that
    owns the revocation channel's slot (ClusterPubSub's choice), so the count is asked there.
    """
    channel = _confirm_channel(client)
    if is_cluster(client):
        node = client.get_node_from_key(keys.revocations_channel())
        return client.publish(channel, message, target_nodes=node)
    return client.publish(channel, message)


def _await_confirmation(pubsub, kind: str, channels: int) -> list[dict]:
    """Wait for the server's confirmation of each channel's (un)subscription (the command
    does not wait for it); return the messages that came meanwhile."""
    deadline = time.monotonic() + SUBSCRIBE_TIMEOUT
    confirmed, early = 0, []
    while confirmed < channels:
        left = deadline - time.monotonic()
        if left <= 0:
            raise redis.TimeoutError(f"no {kind} confirmation")
        message = pubsub.get_message(timeout=left)
        if message and message.get("type") == kind:
            confirmed += 1
        elif message:
            early.append(message)
    return early


tracker = Tracker()
