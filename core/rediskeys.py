"""Every Redis key sessionhub uses, in one place.

All keys share one prefix (`SESSIONHUB["REDIS_KEY_PREFIX"]`), so the tests can use their own
and a shared Redis can host several deployments.

Virtual shards (`SESSIONHUB["REDIS_SHARDS"]`): the live sessions are spread over a fixed number
of shards, a user's sessions in shard `user id % REDIS_SHARDS` (`shard_of`), so that a user's
sessions and their set share one shard and the session limit stays one atomic script. Every
key of a shard carries that shard's hash tag, `{<prefix>:<n>}`: the session hashes, the user's
session set and calls per minute, the activity/started/ended indexes, the dirty and in-flight
sets, the event stream, the stats hash, the duration histogram, the flush sequences and the
per-minute counters. On a Redis Cluster every multi-key script then touches one slot — also
the key names the scripts build from prefixes passed in ARGV, which carry the same tag.
Figures that span the shards (active sessions, stats, histograms) are summed by their readers.

Throttling's login gate and lock periods (multi-key scripts over the username, the address
and the account at once) share shard 0's tag: one slot for every login's gate, a documented
limit of the cluster mode. Keys read or written alone (the sync's state, the Celery heartbeat,
task histograms, the revocation channels and acknowledgements) carry no tag.

With one shard on a single Redis (the default) no key carries a tag: the names are the ones
sessionhub always used.
"""

from django.conf import settings

from core.conf import get_settings


class _Keys:
    @property
    def prefix(self) -> str:
        return get_settings().REDIS_KEY_PREFIX

    @property
    def shard_count(self) -> int:
        return get_settings().REDIS_SHARDS

    @property
    def sharded(self) -> bool:
        """Whether keys carry their shard's hash tag (several shards, or a Redis Cluster)."""
        return self.shard_count > 1 or bool(getattr(settings, "REDIS_CLUSTER_NODES", None))

    def shards(self) -> range:
        return range(self.shard_count)

    def shard_of(self, user_id: int | str) -> int:
        """The shard of a user's sessions."""
        return int(user_id) % self.shard_count

    def base(self, shard: int = 0) -> str:
        """What every key of a shard starts with: the prefix, inside the shard's hash tag."""
        if not self.sharded:
            return self.prefix
        return f"{{{self.prefix}:{shard}}}"

    def session(self, sid: str, shard: int = 0) -> str:
        return f"{self.base(shard)}:s:{sid}"

    def session_prefix(self, shard: int = 0) -> str:
        return f"{self.base(shard)}:s:"

    def user_sessions(self, user_id: int | str) -> str:
        return f"{self.user_sessions_prefix(self.shard_of(user_id))}{user_id}"

    def user_sessions_prefix(self, shard: int = 0) -> str:
        return f"{self.base(shard)}:u:"

    def user_calls_per_minute(self, user_id: int) -> str:
        """Hash: a user's API calls per minute over the last hour (a ring of minute slots)."""
        return f"{self.user_calls_per_minute_prefix(self.shard_of(user_id))}{user_id}"

    def user_calls_per_minute_prefix(self, shard: int = 0) -> str:
        return f"{self.base(shard)}:cpm:"

    def active_index(self, shard: int = 0) -> str:
        """Sorted set of live sids scored by last activity (epoch seconds)."""
        return f"{self.base(shard)}:idx:last"

    def started_index(self, shard: int = 0) -> str:
        """Sorted set of live sids scored by start time, for the absolute timeout."""
        return f"{self.base(shard)}:idx:started"

    def ended_index(self, shard: int = 0) -> str:
        """Sorted set of recently ended sids scored by end time (reloaded by every process)."""
        return f"{self.base(shard)}:idx:ended"

    def dirty(self, shard: int = 0) -> str:
        return f"{self.base(shard)}:dirty"

    def dirty_inflight(self, shard: int = 0) -> str:
        return f"{self.base(shard)}:dirty:inflight"

    def events(self, shard: int = 0) -> str:
        """A shard's event stream; events written outside a shard's scripts (throttling,
        refreshes, admin logins) go to shard 0's."""
        return f"{self.base(shard)}:events"

    def revocations_channel(self) -> str:
        return f"{self.prefix}:revoked"

    def revocation_confirm_channel(self, db: int) -> str:
        """Ends whose caller waits for every web process to acknowledge them. Per database:
        channels are server-wide, and PUBLISH counts every subscriber of the name."""
        return f"{self.prefix}:revoked:confirm:{db}"

    def revocation_ack(self, nonce: str) -> str:
        """List the web processes push to when they have an end (read by its caller)."""
        return f"{self.prefix}:revoked:ack:{nonce}"

    def flush_sequence(self, process_id: str, shard: int = 0) -> str:
        """Last tracking batch applied from one web process to one shard (exactly-once
        flushes)."""
        return f"{self.base(shard)}:flush:{process_id}"

    def stats(self, shard: int = 0) -> str:
        """Hash of counters (api calls, tracking errors, ...); one per shard, summed by the
        readers."""
        return f"{self.base(shard)}:stats"

    def per_minute(self, name: str, minute: int, shard: int = 0) -> str:
        """Counter of one figure (`api_calls`, `login_failures`) in one minute (epoch seconds
        // 60), per shard. The scripts that count (track_flush.lua, login_failure.lua) give it
        2 hours to live: the overview reads back one hour, so at most ~240 keys a shard."""
        return f"{self.base(shard)}:pm:{name}:{minute}"

    def duration_histogram(self, shard: int = 0) -> str:
        return f"{self.base(shard)}:hist:duration"

    def task_histogram(self, task_name: str) -> str:
        return f"{self.prefix}:hist:task:{task_name}"

    def sync_lock(self, shard: int = 0) -> str:
        return f"{self.base(shard)}:lock:sync"

    def sync_state(self) -> str:
        return f"{self.prefix}:sync"

    def lost_swept(self, shard: int = 0) -> str:
        """Set (with a TTL) when PostgreSQL's open sessions of a shard were last checked
        against Redis: gone with the shard's data, so a loss brings the next check at once
        (audit.lost)."""
        return f"{self.base(shard)}:lost:swept"

    def lost_suspects(self, shard: int = 0) -> str:
        """Sorted set of a shard's sessions open in PostgreSQL that Redis does not know,
        scored by when they are due to be closed as lost unless they come back (audit.lost)."""
        return f"{self.base(shard)}:lost:suspects"

    def quarantine_retry_set(self) -> str:
        """Sessions being retried out of the sync's quarantine (never the live ones' keys)."""
        return f"{self.base(0)}:qretry"

    def quarantine_retry_prefix(self) -> str:
        return f"{self.base(0)}:qretry:s:"

    def celery_heartbeat(self) -> str:
        return f"{self.prefix}:celery:heartbeat"

    def throttle_pair(self, pair_hash: str) -> str:
        return f"{self.base(0)}:thr:pair:{pair_hash}"

    def throttle_ip(self, ip: str) -> str:
        return f"{self.base(0)}:thr:ip:{ip}"

    def throttle_ip_usernames(self, ip: str) -> str:
        return f"{self.base(0)}:thr:ipu:{ip}"

    def throttle_account(self, username_hash: str) -> str:
        """An account's slow lane (hash: until, next turn, lock period)."""
        return f"{self.base(0)}:thr:acct:{username_hash}"

    def throttle_account_attempts(self, username_hash: str) -> str:
        """Sorted set of an account's recent password checks by time (successes taken back)."""
        return f"{self.base(0)}:thr:att:{username_hash}"

    def throttle_known(self, username_hash: str) -> str:
        """Hash of the address buckets an account logged in from, to the last success there."""
        return f"{self.base(0)}:thr:known:{username_hash}"

    def lockouts(self) -> str:
        """Sorted set of lock keys by the end of their lock (the locks in force)."""
        return f"{self.base(0)}:thr:locked"

    def lockout_periods(self) -> str:
        """Hash of open lock periods: id -> closing event template, id|n -> refusals."""
        return f"{self.base(0)}:thr:periods"

    def lockout_periods_due(self) -> str:
        """Sorted set of open lock period ids by the end of their lock."""
        return f"{self.base(0)}:thr:periods:due"


keys = _Keys()
