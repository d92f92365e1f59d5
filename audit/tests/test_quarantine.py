"""A row PostgreSQL cannot take never stalls the sync: it is kept aside, with the reason, in
the transaction that commits the rest, and nothing is lost or counted twice.

The hostile values are written straight into Redis (around the validating entry points), the
way a bug, a hand edit or a restored dump would leave them.
"""

import json
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db.models import Sum
from django.urls import reverse
from rest_framework.test import APIClient

from accounts import export
from accounts.tests.helpers import bearer, login
from accounts.tracking import tracker
from audit import services, sync
from audit.models import AuditEvent, AuditSession, SyncQuarantine
from core import clock
from core.redis import get_redis
from core.rediskeys import keys

pytestmark = pytest.mark.django_db(transaction=True)

# The address that stalled every sync until it was blanked by hand.
XSS_ZONE_IP = "fe80::1%<img src=x onerror=alert('ip')>"


@pytest.fixture
def sessions(django_user_model, password):
    """Log in `n` times (one user each), make `calls` calls per session; returns the sids."""
    client = APIClient()

    def make(n: int, calls: int = 3) -> list[str]:
        sids = []
        for i in range(n):
            name = f"user{len(sids)}-{i}-{django_user_model.objects.count()}"
            django_user_model.objects.create_user(username=name, password=password)
            pair = login(client, name, password).json()
            for _ in range(calls):
                assert client.get("/api/sessions/", **bearer(pair["access"])).status_code == 200
            sids.append(client.get("/api/me/", **bearer(pair["access"])).json()["session"]["sid"])
        assert tracker.flush()
        return sids

    return make


def quarantined() -> dict[tuple[str, str], SyncQuarantine]:
    return {(q.kind, q.key): q for q in SyncQuarantine.objects.all()}


def test_an_unparseable_client_address_no_longer_stalls_the_sync(sessions):
    good = sessions(5)
    client = get_redis()
    bad = good.pop(2)
    client.hset(keys.session(bad), "ip", XSS_ZONE_IP)

    first = services.sync_run()

    assert first.quarantined_sessions == 1
    assert set(AuditSession.objects.values_list("sid", flat=True)) == set(good)
    assert AuditSession.objects.aggregate(n=Sum("api_call_count"))["n"] == 4 * 4  # 3 + /me
    held = quarantined()[("session", bad)]
    assert "ip" in held.error
    row_id, fields = sync.parse_raw_row(held.raw)
    assert row_id == bad.encode() and fields[b"ip"] == XSS_ZONE_IP.encode()
    # Acknowledged: the backlog is empty, so the lag no longer grows; runs keep succeeding.
    assert (first.backlog_sessions, first.backlog_events) == (0, 0)
    assert not client.exists(keys.dirty_inflight())
    assert int(client.hget(keys.sync_state(), "quarantined:sessions")) == 1
    assert not services.sync_run().quarantined_sessions
    assert int(client.hget(keys.stats(), "sync_runs:ok")) == 2


def test_the_session_is_written_once_its_copy_is_repaired(sessions):
    """A quarantined session's later updates are tried again: refused, they replace the held
    copy (counts are absolute); accepted, they land and the session leaves the quarantine."""
    [sid] = sessions(1, calls=5)
    client = get_redis()
    client.hset(keys.session(sid), "ip", XSS_ZONE_IP)
    services.sync_run()
    client.hincrby(keys.session(sid), "n", 10)  # more calls while it is held
    client.sadd(keys.dirty(), sid)
    services.sync_run()
    held = quarantined()[("session", sid)]
    assert held.attempts == 2
    assert sync.parse_raw_row(held.raw)[1][b"n"] == b"16"
    assert not AuditSession.objects.exists()

    client.hset(keys.session(sid), "ip", "fe80::1")  # the hash repaired in Redis
    client.sadd(keys.dirty(), sid)
    services.sync_run()
    assert AuditSession.objects.get().api_call_count == 16
    assert not SyncQuarantine.objects.exists()
    assert int(client.hget(keys.sync_state(), "quarantined:sessions")) == 0


def test_retry_lands_what_the_current_code_accepts_and_discard_gives_up(sessions):
    a, b = sessions(2)
    client = get_redis()
    client.hset(keys.session(a), "ip", "1.2.3.4/24")  # a network, not a host
    client.hset(keys.session(b), "ip", XSS_ZONE_IP)
    services.sync_run()
    assert set(quarantined()) == {("session", a), ("session", b)}
    # Both sessions end and expire from Redis: the quarantine holds the only copy.
    client.delete(keys.session(a), keys.session(b))

    assert services.quarantine_retry().landed == 0  # nothing changed: both refused again
    assert {q.attempts for q in SyncQuarantine.objects.all()} == {2}
    # A release that takes networks as their address (say) would let one of them through.
    held_a = SyncQuarantine.objects.get(key=a)
    row_id, fields = sync.parse_raw_row(held_a.raw)
    fields[b"ip"] = b"1.2.3.4"
    SyncQuarantine.objects.filter(pk=held_a.pk).update(raw=sync.raw_row(row_id, fields))
    result = services.quarantine_retry(ids=[held_a.pk])
    assert (result.landed, result.refused) == (1, 0)
    assert AuditSession.objects.get(sid=a).api_call_count == 4
    assert set(quarantined()) == {("session", b)}
    assert not client.exists(keys.quarantine_retry_set())

    assert services.quarantine_discard(ids=[SyncQuarantine.objects.get().pk]) == 1
    assert int(client.hget(keys.sync_state(), "quarantined:sessions")) == 0


def test_an_event_postgresql_refuses_is_isolated_and_the_cursor_moves_on(sessions):
    sessions(1)
    client = get_redis()
    good = {"type": "login_failed", "ts": clock.now(), "username": "x", "ip": "192.0.2.1"}
    client.xadd(keys.events(), {"d": json.dumps({**good, "ip": XSS_ZONE_IP})})
    client.xadd(keys.events(), {"d": json.dumps(good)})

    result = services.sync_run()

    assert (result.events, result.quarantined_events) == (2, 1)  # the login and `good`
    assert client.xlen(keys.events()) == 0
    [held] = SyncQuarantine.objects.filter(kind="event")
    assert held.error == "ip: not a host address"
    assert AuditEvent.objects.filter(event_type="login_failed").count() == 1
    assert services.sync_run().events == 0


def test_an_event_only_postgresql_refuses_is_isolated_too(sessions, monkeypatch):
    """`event_row` checks what it knows; should a check miss something (here: a type too long
    for its column), PostgreSQL's refusal is isolated the same way."""
    sessions(3)  # three login events
    client = get_redis()
    client.xadd(keys.events(), {"d": json.dumps({"type": "t" * 40, "ts": clock.now()})})
    real = export.event_row

    def lenient(stream_id, fields, anonymize_ip):
        data = json.loads(fields[b"d"])
        if data["type"] == "t" * 40:
            return (
                stream_id,
                data["type"],
                None,
                "",
                None,
                "",
                "",
                "",
                None,
                datetime.now(UTC),
            )
        return real(stream_id, fields, anonymize_ip)

    monkeypatch.setattr(export, "event_row", lenient)
    result = services.sync_run()
    assert (result.events, result.quarantined_events) == (3, 1)
    [held] = SyncQuarantine.objects.all()
    assert "too long" in held.error
    assert AuditEvent.objects.count() == 3 and client.xlen(keys.events()) == 0


def test_postgresql_refusals_are_isolated_without_losing_the_batch(sessions, monkeypatch):
    """The reader lets through what only PostgreSQL can judge: a user agent that is not UTF-8
    (refused by COPY, at a line it names) and an address of the right shape that is none
    (refused by the upsert's cast, found by halving the batch)."""
    sids = sessions(12, calls=2)
    client = get_redis()
    client.hset(keys.session(sids[3]), "ua", b"bad \xff\xfe agent")
    # PostgreSQL takes leading zeros in an IPv4 address, but not in one inside IPv6.
    client.hset(keys.session(sids[8]), "ip", "::ffff:001.2.3.4")
    client.hset(keys.session(sids[10]), "ip", "::ffff:1.02.3.4")
    attempts = []
    real = sync._attempt
    monkeypatch.setattr(sync, "_attempt", lambda *a: attempts.append(len(a[2])) or real(*a))

    services.sync_run()

    bad = {sids[3], sids[8], sids[10]}
    assert {key for _, key in quarantined()} == bad
    assert set(AuditSession.objects.values_list("sid", flat=True)) == set(sids) - bad
    assert AuditSession.objects.aggregate(n=Sum("api_call_count"))["n"] == 9 * 3
    errors = {q.key: q.error for q in SyncQuarantine.objects.all()}
    assert "UTF8" in errors[sids[3]]
    assert "type inet" in errors[sids[8]] and "type inet" in errors[sids[10]]
    assert len(attempts) < 40, attempts  # isolated, not row by row


def test_the_quarantine_in_the_admin_is_read_only_for_analysts(
    sessions, client, django_user_model, password
):
    [sid] = sessions(1)
    get_redis().hset(keys.session(sid), "ip", XSS_ZONE_IP)
    services.sync_run()
    row = SyncQuarantine.objects.get()
    listing = reverse("admin:audit_syncquarantine_changelist")
    detail = reverse("admin:audit_syncquarantine_change", args=[row.pk])

    staff = django_user_model.objects.create_user("staff", password=password, is_staff=True)
    client.force_login(staff)
    assert client.get(listing).status_code == 403

    staff.user_permissions.add(Permission.objects.get(codename="view_analytics"))
    client.force_login(django_user_model.objects.get(pk=staff.pk))
    page = client.get(listing)
    assert page.status_code == 200
    html = page.content.decode()
    assert sid in html and "ip: not a host address" in html
    shown = client.get(detail)
    assert shown.status_code == 200
    html = shown.content.decode()
    assert "&lt;img src=x onerror=alert(" in html and "<img src=x" not in html  # the raw row
    assert 'name="_save"' not in html
    assert client.post(detail, {"error": "edited"}).status_code == 403
    delete = reverse("admin:audit_syncquarantine_delete", args=[row.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert SyncQuarantine.objects.get().error == row.error


def test_the_command_lists_retries_and_discards(sessions):
    [sid] = sessions(1)
    get_redis().hset(keys.session(sid), "ip", XSS_ZONE_IP)
    call_command("sync_sessions", stdout=StringIO())
    row = SyncQuarantine.objects.get()

    def run(*args) -> str:
        out = StringIO()
        call_command("sync_quarantine", *args, stdout=out)
        return out.getvalue()

    listed = run()
    assert f"{row.pk}\tsession\t{sid}\trefused 1 times" in listed
    assert "1 rows in quarantine" in listed
    assert "retried: 0 written, 1 refused again" in run("--retry")
    assert "discarded 1 of 1 rows" in run("--discard", str(row.pk))
    assert "0 rows in quarantine" in run()
