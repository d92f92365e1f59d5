"""The audit trail in PostgreSQL, written in bulk by the sync from Redis (audit.services)."""

from django.conf import settings
from django.db import models
from django.db.models.functions import Upper

from accounts.events import EndReason, EventType


class AuditSession(models.Model):
    """One login. Counts are absolute (copied, not added), so a replayed sync writes the same.

    `hourly_calls` holds the session's API calls per hour ({"<epoch of the hour>": calls}) — at
    most 13 entries under the 12 h absolute timeout. Kept inside the row rather than as a row
    per hour: the sync then writes one row per session, and the windows (24 h, 7 d, 30 d) are
    summed from it by the analytics views.
    """

    sid = models.CharField(primary_key=True, max_length=64)
    # Looked up through audit_session_user_started; a separate user_id index would only cost.
    # No foreign-key constraint in PostgreSQL: the sync inserts only sessions whose user exists
    # (it joins accounts_user), and the constraint's per-row checks at commit took 0.36 s of
    # the 1.94 s the sync spent writing 100k new sessions (measured with bench_sync's data).
    # Deleting a user still deletes their sessions (Django's CASCADE); a session inserted while
    # its user was being deleted is removed by `prune_audit`.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="audit_sessions",
        db_index=False,
        db_constraint=False,
    )
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.TextField(blank=True)
    started_at = models.DateTimeField()
    last_active = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=32, choices=EndReason.choices, blank=True)
    api_call_count = models.BigIntegerField(default=0)
    hourly_calls = models.JSONField(default=dict, blank=True)
    # Redis lost the session and a web process rebuilt it (count restarting from zero): the
    # generation of the copy last written, and what earlier generations had counted.
    generation = models.BigIntegerField(default=0)
    calls_before = models.BigIntegerField(default=0)
    hourly_before = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "audit_session"
        verbose_name = "session"
        verbose_name_plural = "session history"
        indexes = [
            models.Index(fields=["user", "-started_at"], name="audit_session_user_started"),
            models.Index(
                fields=["-ended_at"],
                name="audit_session_ended",
                condition=models.Q(ended_at__isnull=False),
            ),
            # Open sessions, on a column that never changes: while a session is open, its
            # updates change no indexed column and stay heap-only (see the fillfactor).
            models.Index(
                fields=["started_at"],
                name="audit_session_open_started",
                condition=models.Q(ended_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return self.sid


class AuditUserActivity(models.Model):
    """First and last activity of each user, kept by the sync with LEAST/GREATEST."""

    # No constraint in PostgreSQL, for the reason given on AuditSession.user.
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="+",
        db_constraint=False,
    )
    first_active = models.DateTimeField()
    last_active = models.DateTimeField()

    class Meta:
        db_table = "audit_user_activity"
        indexes = [models.Index(fields=["last_active"], name="audit_user_last_active")]

    def __str__(self) -> str:
        return f"user {self.user_id} last active {self.last_active:%Y-%m-%d %H:%M}"


class AuditEvent(models.Model):
    """A security or session event. `stream_id` (its Redis stream id) makes delivery idempotent.

    Partitioned by month of `occurred_at` (migration 0012; partitions in audit.partitions), so
    retention drops whole months. A partitioned table's keys must contain the partition key:
    in PostgreSQL the primary key is `(id, occurred_at)` — `id` stays unique, drawn from one
    sequence, and Django keeps treating it as the primary key — and the stream id is unique
    with `occurred_at`, which a stream entry always carries unchanged.
    """

    stream_id = models.CharField(max_length=32)
    event_type = models.CharField(max_length=32, choices=EventType.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="audit_events",
        db_index=False,  # audit_event_user_time serves it
    )
    username = models.CharField(max_length=150, blank=True, help_text="As typed at login.")
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.TextField(blank=True)
    session_id = models.CharField(max_length=64, blank=True)
    reason = models.CharField(max_length=32, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The admin who did it, for admin actions.",
        db_index=False,  # rare lookups; not worth an index write per event
    )
    occurred_at = models.DateTimeField()

    class Meta:
        db_table = "audit_event"
        indexes = [
            # The admin lists events newest first: a BRIN index (48 kB at 10M events) counts a
            # time range well but cannot give that order, and the list sorted 10M rows per page
            # view (bench_admin). The btree serves the order and the ranges.
            models.Index(fields=["occurred_at", "id"], name="audit_event_occurred"),
            models.Index(fields=["event_type", "occurred_at"], name="audit_event_type_time"),
            models.Index(fields=["user", "-occurred_at"], name="audit_event_user_time"),
            # Failed logins name the username as typed; the per-user timeline finds them.
            models.Index(Upper("username"), name="audit_event_username_ci"),
        ]
        constraints = [
            # The sync's ON CONFLICT target: one row per stream entry.
            models.UniqueConstraint(
                fields=["stream_id", "occurred_at"], name="audit_event_stream_id_occurred"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.stream_id}"


class SyncCursor(models.Model):
    """How far the event stream has been copied; moved in the same transaction as the rows."""

    name = models.CharField(primary_key=True, max_length=32)
    last_ms = models.BigIntegerField(default=0)
    last_seq = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "audit_sync_cursor"

    def __str__(self) -> str:
        return f"{self.name} at {self.stream_id}"

    @property
    def stream_id(self) -> str:
        return f"{self.last_ms}-{self.last_seq}"


class SyncQuarantine(models.Model):
    """A row the sync could not write, kept aside with the reason instead of stalling the sync.

    Written in the same transaction as the rows around it, before Redis is acknowledged, so a
    refused session or event is never lost: it is here, counted by the `sync_quarantined_rows`
    gauge, until `manage.py sync_quarantine` retries it (it then lands) or discards it. One row
    per session or event: a session refused again is kept here in its newest copy (its counts
    are absolute, so the newest copy holds everything known), and a later copy PostgreSQL
    accepts lands and takes it out of quarantine.
    """

    class Kind(models.TextChoices):
        SESSION = "session", "Session"
        EVENT = "event", "Event"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    key = models.CharField(
        max_length=80, help_text="Session id or stream id; a digest when it was not printable."
    )
    raw = models.TextField(
        help_text="The row as Redis held it: JSON, bytes that are not UTF-8 as \\udcXX escapes."
    )
    error = models.TextField(help_text="Why: the sync's own check, or PostgreSQL's message.")
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=1, help_text="Times it was refused.")

    class Meta:
        db_table = "audit_quarantine"
        verbose_name = "quarantined row"
        verbose_name_plural = "sync quarantine"
        constraints = [
            models.UniqueConstraint(fields=["kind", "key"], name="audit_quarantine_kind_key")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.key}"
