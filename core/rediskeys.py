"""Every Redis key sessionhub uses, in one place.

All keys share one prefix (`SESSIONHUB["REDIS_KEY_PREFIX"]`), so the tests can use their own
and a shared Redis can host several deployments.
"""

from core.conf import get_settings


class _Keys:
    @property
    def prefix(self) -> str:
        return get_settings().REDIS_KEY_PREFIX

    def session(self, sid: str) -> str:
        return f"{self.prefix}:s:{sid}"

    def session_prefix(self) -> str:
        return f"{self.prefix}:s:"

    def user_sessions(self, user_id: int | str) -> str:
        return f"{self.prefix}:u:{user_id}"

    def user_calls_per_minute(self, user_id: int) -> str:
        """Hash: a user's API calls per minute over the last hour (a ring of minute slots)."""
        return f"{self.user_calls_per_minute_prefix()}{user_id}"

    def user_calls_per_minute_prefix(self) -> str:
        return f"{self.prefix}:cpm:"

    def active_index(self) -> str:
        """Sorted set of live sids scored by last activity (epoch seconds)."""
        return f"{self.prefix}:idx:last"

    def started_index(self) -> str:
        """Sorted set of live sids scored by start time, for the absolute timeout."""
        return f"{self.prefix}:idx:started"

    def ended_index(self) -> str:
        """Sorted set of recently ended sids scored by end time (reloaded by every process)."""
        return f"{self.prefix}:idx:ended"

    def dirty(self) -> str:
        return f"{self.prefix}:dirty"

    def dirty_inflight(self) -> str:
        return f"{self.prefix}:dirty:inflight"

    def events(self) -> str:
        return f"{self.prefix}:events"

    def revocations_channel(self) -> str:
        return f"{self.prefix}:revoked"

    def revocation_confirm_channel(self, db: int) -> str:
        """Ends whose caller waits for every web process to acknowledge them. Per database:
        channels are server-wide, and PUBLISH counts every subscriber of the name."""
        return f"{self.prefix}:revoked:confirm:{db}"

    def revocation_ack(self, nonce: str) -> str:
        """List the web processes push to when they have an end (read by its caller)."""
        return f"{self.prefix}:revoked:ack:{nonce}"

    def flush_sequence(self, process_id: str) -> str:
        """Last tracking batch applied from one web process (exactly-once flushes)."""
        return f"{self.prefix}:flush:{process_id}"

    def stats(self) -> str:
        """Hash of cluster-wide counters (api calls, tracking errors, ...)."""
        return f"{self.prefix}:stats"

    def per_minute(self, name: str, minute: int) -> str:
        """Counter of one cluster-wide figure (`api_calls`, `login_failures`) in one minute
        (epoch seconds // 60). The scripts that count (track_flush.lua, login_failure.lua)
        give it 2 hours to live: the overview reads back one hour, so at most ~240 keys."""
        return f"{self.prefix}:pm:{name}:{minute}"

    def duration_histogram(self) -> str:
        return f"{self.prefix}:hist:duration"

    def task_histogram(self, task_name: str) -> str:
        return f"{self.prefix}:hist:task:{task_name}"

    def sync_lock(self) -> str:
        return f"{self.prefix}:lock:sync"

    def sync_state(self) -> str:
        return f"{self.prefix}:sync"

    def lost_swept(self) -> str:
        """Set (with a TTL) when PostgreSQL's open sessions were last checked against Redis:
        gone with Redis' data, so a loss brings the next check at once (audit.lost)."""
        return f"{self.prefix}:lost:swept"

    def lost_suspects(self) -> str:
        """Sorted set of sessions open in PostgreSQL that Redis does not know, scored by when
        they are due to be closed as lost unless they come back (audit.lost)."""
        return f"{self.prefix}:lost:suspects"

    def quarantine_retry_set(self) -> str:
        """Sessions being retried out of the sync's quarantine (never the live ones' keys)."""
        return f"{self.prefix}:qretry"

    def quarantine_retry_prefix(self) -> str:
        return f"{self.prefix}:qretry:s:"

    def celery_heartbeat(self) -> str:
        return f"{self.prefix}:celery:heartbeat"

    def throttle_pair(self, pair_hash: str) -> str:
        return f"{self.prefix}:thr:pair:{pair_hash}"

    def throttle_ip(self, ip: str) -> str:
        return f"{self.prefix}:thr:ip:{ip}"

    def throttle_ip_usernames(self, ip: str) -> str:
        return f"{self.prefix}:thr:ipu:{ip}"

    def throttle_account(self, username_hash: str) -> str:
        """An account's slow lane (hash: until, next turn, lock period)."""
        return f"{self.prefix}:thr:acct:{username_hash}"

    def throttle_account_attempts(self, username_hash: str) -> str:
        """Sorted set of an account's recent password checks by time (successes taken back)."""
        return f"{self.prefix}:thr:att:{username_hash}"

    def throttle_known(self, username_hash: str) -> str:
        """Hash of the address buckets an account logged in from, to the last success there."""
        return f"{self.prefix}:thr:known:{username_hash}"

    def lockouts(self) -> str:
        """Sorted set of lock keys by the end of their lock (the locks in force)."""
        return f"{self.prefix}:thr:locked"

    def lockout_periods(self) -> str:
        """Hash of open lock periods: id -> closing event template, id|n -> refusals."""
        return f"{self.prefix}:thr:periods"

    def lockout_periods_due(self) -> str:
        """Sorted set of open lock period ids by the end of their lock."""
        return f"{self.prefix}:thr:periods:due"


keys = _Keys()
