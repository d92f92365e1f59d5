"""The sync fuzzed: hostile values in every field it copies, written straight into the Redis
hashes and the event stream (around the validating entry points), mixed at random among good
rows and spread over many small batches and transactions.

Whatever they hold: the sync completes; good rows land exactly (with the bounds and clean-ups
the entry points apply); bad rows are quarantined with a reason and their raw bytes; nothing is
left in Redis's backlog; and a full replay changes nothing and counts nothing twice.
"""

import ipaddress
import json
import random
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.models import Sum
from prometheus_client.parser import text_string_to_metric_families

from accounts.events import MAX_USER_AGENT, MAX_USERNAME
from accounts.livesessions import new_sid
from audit import services, sync
from audit.models import AuditEvent, AuditSession, SyncQuarantine
from core.redis import get_redis
from core.rediskeys import keys

pytestmark = pytest.mark.django_db(transaction=True)

OK, BAD = "ok", "bad"
NOW = datetime.now(UTC).timestamp()
HOUR = int(NOW // 3600 * 3600)
HUGE = "A" * 300_000
HUGE_MULTIBYTE = "é" * 50_000

# field -> [(value written to Redis, verdict)]; a field absent from a row is written as None.
SESSION_VALUES = {
    "ip": [
        ("fe80::1%<img src=x onerror=alert('ip')>", BAD),
        ("fe80::1%eth0", BAD),
        ("1.2.3.4/24", BAD),
        ("999.1.1.1", BAD),
        ("1.2.3", BAD),
        (" 1.2.3.4", BAD),
        ("1.2.3.4\n", BAD),
        ("1:2:3:4:5:6:7:8:9", BAD),
        ("::ffff:001.2.3.4", BAD),  # the Lua check lets it through; PostgreSQL does not
        (b"\xff\xfe", BAD),
        ("1.2.3.4\x00", BAD),
        ("a" * 10_000, BAD),
        ("", OK),
        ("203.0.113.9", OK),
        ("2001:db8::1", OK),
        ("::ffff:1.2.3.4", OK),
        ("FE80::1", OK),
    ],
    "ua": [
        ("tab\there, newline\nthere, back\\slash, \\N, cr\r", OK),
        ("nul\x00byte", OK),
        (HUGE, OK),
        (HUGE_MULTIBYTE, OK),
        ("emoji 😀 and \u202e", OK),
        (None, OK),
        (b"not utf-8 \xff\xfe", BAD),
        (b"cut \xc3", BAD),
        (b"overlong \xc0\xaf", BAD),
    ],
    "u": [
        (None, BAD),
        ("", BAD),
        ("abc", BAD),
        ("-5", BAD),
        ("0", BAD),
        ("1e3", BAD),
        ("1.5", BAD),
        ("99999999999999999999", BAD),
    ],
    "st": [
        (None, BAD),
        ("", BAD),
        ("abc", BAD),
        ("-1", BAD),
        ("0", BAD),
        ("1e400", BAD),
        ("inf", BAD),
        ("nan", BAD),
        ("99999999999", BAD),
        ("1.7e9", BAD),
    ],
    "la": [(None, BAD), ("-5", BAD), ("1e400", BAD), (repr(NOW + 10 * 86400), BAD)],
    "end": [("abc", BAD), ("-1", BAD), ("1e300", BAD), (repr(NOW), OK)],
    "why": [("x" * 33, BAD), ("logout", OK), ("a\tb\\c\nd", OK)],
    "n": [
        ("-5", BAD),
        ("abc", BAD),
        ("1e3", BAD),
        ("9" * 16, BAD),
        ("0x10", BAD),
        (None, OK),
        ("0", OK),
    ],
    f"h:{HOUR}": [("-1", BAD), ("abc", BAD), ("1.5", BAD), ("9" * 16, BAD)],
    "h:abc": [("1", BAD)],
    "h:-3600": [("1", BAD)],
    "h:1e3": [("1", BAD)],
    "h:99999999999999": [("1", BAD)],
    "g": [("-1", BAD), ("x", BAD), ("1", OK)],
}
SID_VALUES = [
    ("<script>alert(1)</script>", BAD),
    ("a" * 65, BAD),
    ("nul\x00sid", BAD),
    (b"\xff\xfe", BAD),
    ("tab\tsid", BAD),
]

EVENT_VALUES = {
    "type": [(None, BAD), ("<script>", BAD), (5, BAD)],
    "uid": [("5", BAD), (-1, BAD), (0, BAD), (2**64, BAD), (True, BAD), (1.5, BAD), (None, OK)],
    "ts": [
        (None, BAD),
        ("abc", BAD),
        (1e300, BAD),
        (-1, BAD),
        (float("nan"), BAD),
        (float("inf"), BAD),
        (NOW + 10 * 86400, BAD),
    ],
    "ip": [
        ("fe80::1%<img src=x onerror=alert('ip')>", BAD),
        ("1.2.3.4/24", BAD),
        (5, BAD),
        ("", OK),
        ("2001:db8::2", OK),
    ],
    "username": [
        (5, BAD),
        ("nul\x00name", OK),
        ("u" * 10_000, OK),
        ("lone \ud800 surrogate", OK),
    ],
    "ua": [(["a"], BAD), (HUGE, OK), ("tab\tnewline\nback\\slash", OK)],
    "sid": [("s" * 100, OK)],
    "reason": [("r" * 100, OK), ({}, BAD)],
    "actor": [("x", BAD), (2**63, BAD)],
}
RAW_EVENTS = [  # whole entries, not JSON objects
    ({"d": b"\xff\xfe"}, BAD),
    ({"d": "[1, 2]"}, BAD),
    ({"d": "null"}, BAD),
    ({"d": "{"}, BAD),
    ({"d": "[" * 100_000}, BAD),
    ({"x": "no payload"}, BAD),
]


def as_bytes(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")


def clean(value: str, limit: int) -> str:
    return value.replace("\x00", "")[:limit].encode("utf-8", "replace").decode()


class Corpus:
    """Sessions and events, each good or with one or two hostile fields, and what the audit
    trail must hold afterwards."""

    def __init__(self, users: list[int], seed: int) -> None:
        self.rng = random.Random(seed)
        self.users = users
        self.sessions: dict[bytes, tuple[dict, str]] = {}
        self.events: list[tuple[dict, str, dict | None]] = []

    def good_session(self) -> dict:
        started = NOW - self.rng.randrange(60, 3000)
        calls = [self.rng.randrange(0, 50), self.rng.randrange(1, 50)]
        return {
            "u": str(self.rng.choice(self.users)),
            "st": repr(started),
            "la": repr(started + self.rng.randrange(1, 50)),
            "n": str(sum(calls)),
            "ip": f"198.51.100.{self.rng.randrange(256)}",
            "ua": f"client/{self.rng.randrange(10)}",
            f"h:{HOUR - 3600}": str(calls[0]),
            f"h:{HOUR}": str(calls[1]),
        }

    def add_sessions(self, good: int) -> None:
        for _ in range(good):
            self.sessions[new_sid().encode()] = (self.good_session(), OK)
        for name, values in SESSION_VALUES.items():
            for value, verdict in values:
                fields = self.good_session()
                if name.startswith("h:") and name != f"h:{HOUR}":
                    fields.pop(f"h:{HOUR}")
                fields[name] = value
                if self.rng.random() < 0.3 and name != "ua":  # a second, harmless oddity
                    fields["ua"] = "second\tfield"
                self.sessions[new_sid().encode()] = (fields, verdict)
        for sid, verdict in SID_VALUES:
            self.sessions[as_bytes(sid)] = (self.good_session(), verdict)

    def add_events(self, good: int) -> None:
        def event() -> dict:
            return {
                "type": self.rng.choice(["login", "login_failed", "logout"]),
                "ts": NOW - self.rng.randrange(0, 3000),
                "uid": self.rng.choice([*self.users, None]),
                "username": f"name{self.rng.randrange(100)}",
                "ip": "192.0.2.7",
                "ua": "agent",
                "sid": "",
                "reason": "",
                "actor": None,
            }

        for _ in range(good):
            data = event()
            self.events.append(({"d": json.dumps(data)}, OK, data))
        for name, values in EVENT_VALUES.items():
            for value, verdict in values:
                data = {**event(), name: value}
                self.events.append(({"d": json.dumps(data)}, verdict, data))
        for fields, verdict in RAW_EVENTS:
            self.events.append((fields, verdict, None))

    def write(self) -> dict[str, tuple[dict, str, dict | None]]:
        """Into Redis, in a shuffled order; returns the stream entries by id."""
        client = get_redis()
        items = list(self.sessions.items())
        self.rng.shuffle(items)
        for sid, (fields, _) in items:
            mapping = {k: as_bytes(v) for k, v in fields.items() if v is not None}
            client.hset(keys.session_prefix().encode() + sid, mapping=mapping)
            client.sadd(keys.dirty(), sid)
        events = list(self.events)
        self.rng.shuffle(events)
        by_id = {}
        for fields, verdict, data in events:
            stream_id = client.xadd(keys.events(), {k: as_bytes(v) for k, v in fields.items()})
            by_id[stream_id.decode()] = (fields, verdict, data)
        return by_id


def expected_session(sid: bytes, fields: dict) -> dict:
    ua = fields.get("ua")
    ua = "" if ua is None else as_bytes(ua).replace(b"\x00", b"").decode()[:MAX_USER_AGENT]
    hours = {k[2:]: int(v) for k, v in fields.items() if k.startswith("h:")}
    return {
        "sid": sid.decode(),
        "user_id": int(fields["u"]),
        "ip": ipaddress.ip_address(fields["ip"]) if fields["ip"] else None,
        "user_agent": ua,
        "started_at": round(float(fields["st"]), 6),
        "last_active": round(float(fields["la"]), 6),
        "ended_at": round(float(fields["end"]), 6) if "end" in fields else None,
        "end_reason": fields.get("why", ""),
        "api_call_count": int(fields.get("n") or 0),
        "hourly_calls": hours,
    }


def stored_session(row: AuditSession) -> dict:
    return {
        "sid": row.sid,
        "user_id": row.user_id,
        "ip": ipaddress.ip_address(row.ip) if row.ip else None,
        "user_agent": row.user_agent,
        "started_at": round(row.started_at.timestamp(), 6),
        "last_active": round(row.last_active.timestamp(), 6),
        "ended_at": round(row.ended_at.timestamp(), 6) if row.ended_at else None,
        "end_reason": row.end_reason,
        "api_call_count": row.api_call_count,
        "hourly_calls": row.hourly_calls,
    }


def expected_event(stream_id: str, data: dict) -> dict:
    return {
        "stream_id": stream_id,
        "event_type": data["type"],
        "user_id": data["uid"],
        "username": clean(data["username"], MAX_USERNAME),
        "ip": ipaddress.ip_address(data["ip"]) if data["ip"] else None,
        "user_agent": clean(data["ua"], MAX_USER_AGENT),
        "session_id": clean(data["sid"], 64),
        "reason": clean(data["reason"], 32),
        "occurred_at": round(data["ts"], 3),
    }


def stored_event(row: AuditEvent) -> dict:
    return {
        "stream_id": row.stream_id,
        "event_type": row.event_type,
        "user_id": row.user_id,
        "username": row.username,
        "ip": ipaddress.ip_address(row.ip) if row.ip else None,
        "user_agent": row.user_agent,
        "session_id": row.session_id,
        "reason": row.reason,
        "occurred_at": round(row.occurred_at.timestamp(), 3),
    }


def snapshot() -> dict:
    return {
        "sessions": sorted(map(stored_session, AuditSession.objects.all()), key=str),
        "events": sorted(map(stored_event, AuditEvent.objects.all()), key=str),
        "quarantine": sorted(SyncQuarantine.objects.values_list("kind", "key", "raw", "error")),
        "calls": AuditSession.objects.aggregate(n=Sum("api_call_count"))["n"],
    }


def gauge(client) -> dict[str, float]:
    text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    return {
        sample.labels["kind"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "sync_quarantined_rows"
    }


@pytest.mark.parametrize("seed", [1, 2])
def test_hostile_values_in_every_field(django_user_model, settings, client, seed):
    # Small reads and transactions: the bad rows fall in many different batches.
    settings.SESSIONHUB = {**settings.SESSIONHUB, "SYNC_BATCH_SIZE": 9, "SYNC_COMMIT_ROWS": 40}
    users = [django_user_model.objects.create_user(username=f"fuzz{n}").pk for n in range(4)]
    corpus = Corpus(users, seed)
    corpus.add_sessions(good=60)
    corpus.add_events(good=40)
    entries = corpus.write()

    result = services.sync_run()

    good_sessions = {sid: f for sid, (f, verdict) in corpus.sessions.items() if verdict == OK}
    bad_sessions = {sid: f for sid, (f, verdict) in corpus.sessions.items() if verdict == BAD}
    stored = {row.sid: stored_session(row) for row in AuditSession.objects.all()}
    extra = stored.keys() - {sid.decode() for sid in good_sessions}
    assert not extra, [str(corpus.sessions[sid.encode()]) for sid in extra]
    assert stored.keys() == {sid.decode() for sid in good_sessions}
    for sid, fields in good_sessions.items():
        assert stored[sid.decode()] == expected_session(sid, fields), fields
    good_events = {i: data for i, (_, verdict, data) in entries.items() if verdict == OK}
    bad_events = {i: fields for i, (fields, verdict, _) in entries.items() if verdict == BAD}
    logins = AuditEvent.objects.filter(stream_id__in=good_events)
    assert sorted(map(stored_event, logins), key=str) == sorted(
        (expected_event(i, data) for i, data in good_events.items()), key=str
    )
    assert AuditEvent.objects.count() == len(good_events)

    # Every bad row is held, with a reason, and its raw bytes as Redis had them.
    held = {(q.kind, q.key): q for q in SyncQuarantine.objects.all()}
    assert len(held) == len(bad_sessions) + len(bad_events)
    for sid, fields in bad_sessions.items():
        row = held[("session", sync.quarantine_key(sid))]
        assert row.error.strip()
        assert sync.parse_raw_row(row.raw) == (
            sid,
            {k.encode(): as_bytes(v) for k, v in fields.items() if v is not None},
        )
    for stream_id, fields in bad_events.items():
        row = held[("event", stream_id)]
        assert row.error.strip()
        # Beyond what any field may hold, the raw copy keeps the first 64 KiB.
        written = {k.encode(): as_bytes(v)[: sync.RAW_VALUE_CHARS] for k, v in fields.items()}
        assert sync.parse_raw_row(row.raw)[1] == written
    assert (result.sessions, result.quarantined_sessions) == (len(good_sessions), len(bad_sessions))
    assert (result.events, result.quarantined_events) == (len(good_events), len(bad_events))

    # Acknowledged: nothing is left to sync, and the gauge says how much is held.
    assert (result.backlog_sessions, result.backlog_events) == (0, 0)
    assert gauge(client) == {"sessions": len(bad_sessions), "events": len(bad_events)}

    # A full replay: every session marked changed again, the event cursor wound back.
    before = snapshot()
    redis = get_redis()
    redis.sadd(keys.dirty(), *corpus.sessions)
    redis.delete(keys.events())  # a stream remembers its last id: start it again
    for stream_id in sorted(entries, key=lambda i: tuple(map(int, i.split("-")))):
        fields = entries[stream_id][0]
        redis.xadd(keys.events(), {k: as_bytes(v) for k, v in fields.items()}, id=stream_id)
    connection.cursor().execute("UPDATE audit_sync_cursor SET last_ms = 0, last_seq = 0")
    again = services.sync_run()
    assert snapshot() == before
    assert again.quarantined_sessions == len(bad_sessions)
    assert set(SyncQuarantine.objects.values_list("attempts", flat=True)) == {2}
    assert (again.backlog_sessions, again.backlog_events) == (0, 0)
