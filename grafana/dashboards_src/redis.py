"""Redis, on redis_exporter's metrics (in the spirit of Grafana dashboard 763).

Redis holds the live sessions, the tracking counters, the login throttles, the audit event
stream and the Celery broker: memory, clients and evictions matter.
"""

from .common import (
    dashboard,
    finish,
    label_values_variable,
    prom,
    row,
    series_panel,
    stat_panel,
    up_down,
)

UID = "sessionhub-redis"
SEL = 'instance=~"$instance"'

UP = f"max(redis_up{{{SEL}}})"
UPTIME = f"max(redis_uptime_in_seconds{{{SEL}}})"
CLIENTS = f"sum(redis_connected_clients{{{SEL}}})"
BLOCKED = f"sum(redis_blocked_clients{{{SEL}}})"
MEMORY_USED = f"sum(redis_memory_used_bytes{{{SEL}}})"
MEMORY_RSS = f"sum(redis_memory_used_rss_bytes{{{SEL}}})"
MEMORY_PEAK = f"sum(redis_memory_used_peak_bytes{{{SEL}}})"
MEMORY_MAX = f"sum(redis_memory_max_bytes{{{SEL}}})"
FRAGMENTATION = f"max(redis_mem_fragmentation_ratio{{{SEL}}})"
COMMANDS = f"sum(rate(redis_commands_processed_total{{{SEL}}}[$__rate_interval]))"
TOP_COMMANDS = f"topk(10, sum by (cmd) (rate(redis_commands_total{{{SEL}}}[$__rate_interval])))"
HITS = f"sum(rate(redis_keyspace_hits_total{{{SEL}}}[$__rate_interval]))"
MISSES = f"sum(rate(redis_keyspace_misses_total{{{SEL}}}[$__rate_interval]))"
HIT_RATIO = (
    f"sum(increase(redis_keyspace_hits_total{{{SEL}}}[$__range])) / "
    f"clamp_min(sum(increase(redis_keyspace_hits_total{{{SEL}}}[$__range])) + "
    f"sum(increase(redis_keyspace_misses_total{{{SEL}}}[$__range])), 1)"
)
KEYS = f"sum by (db) (redis_db_keys{{{SEL}}})"
EXPIRING = f"sum by (db) (redis_db_keys_expiring{{{SEL}}})"
EVICTED = f"sum(rate(redis_evicted_keys_total{{{SEL}}}[$__rate_interval]))"
EXPIRED = f"sum(rate(redis_expired_keys_total{{{SEL}}}[$__rate_interval]))"
NET_IN = f"sum(rate(redis_net_input_bytes_total{{{SEL}}}[$__rate_interval]))"
NET_OUT = f"sum(rate(redis_net_output_bytes_total{{{SEL}}}[$__rate_interval]))"
CONNECTIONS = f"sum(rate(redis_connections_received_total{{{SEL}}}[$__rate_interval]))"
REJECTED = f"sum(rate(redis_rejected_connections_total{{{SEL}}}[$__rate_interval]))"


def build():
    board = dashboard(
        UID,
        "Redis",
        "The Redis of sessionhub (live sessions, tracking, throttles, audit stream, Celery "
        "broker), from redis_exporter.",
    ).with_variable(
        label_values_variable("instance", "Instance", "label_values(redis_up, instance)")
    )

    board = board.with_row(row("Overview"))
    board = board.with_panel(
        stat_panel(
            "Up",
            UP,
            "1 when redis_exporter reached Redis at its last scrape.",
            steps=[(None, "red"), (1, "green")],
        ).mappings(up_down())
    )
    board = board.with_panel(stat_panel("Uptime", UPTIME, "Since Redis last started.", "s"))
    board = board.with_panel(stat_panel("Clients", CLIENTS, "Connected clients."))
    board = board.with_panel(
        stat_panel(
            "Blocked clients",
            BLOCKED,
            "Clients waiting in a blocking call (BLPOP, XREAD ... BLOCK).",
            steps=[(None, "green"), (50, "orange")],
        )
    )
    board = board.with_panel(
        stat_panel("Memory used", MEMORY_USED, "Memory Redis allocated.", "bytes")
    )
    board = board.with_panel(
        stat_panel(
            "Keyspace hit ratio",
            HIT_RATIO,
            "Share of key lookups that found their key, over the dashboard's time range.",
            "percentunit",
            steps=[(None, "orange"), (0.8, "green")],
        )
    )

    board = board.with_row(row("Load"))
    board = board.with_panel(
        series_panel(
            "Commands/s",
            "Commands processed per second.",
            prom(COMMANDS, "commands/s"),
            unit="ops",
        )
    )
    board = board.with_panel(
        series_panel(
            "Top commands/s",
            "The ten busiest commands.",
            prom(TOP_COMMANDS, "{{cmd}}"),
            unit="ops",
        )
    )
    board = board.with_panel(
        series_panel(
            "Keyspace hits / misses",
            "Key lookups that found, or did not find, their key, per second.",
            prom(HITS, "hits", "A"),
            prom(MISSES, "misses", "B"),
            unit="ops",
        )
    )
    board = board.with_panel(
        series_panel(
            "Network I/O",
            "Bytes received and sent per second.",
            prom(NET_IN, "in", "A"),
            prom(NET_OUT, "out", "B"),
            unit="Bps",
        )
    )

    board = board.with_row(row("Memory and keys"))
    board = board.with_panel(
        series_panel(
            "Memory",
            "Used, resident (RSS) and peak memory, and maxmemory (0: no limit).",
            prom(MEMORY_USED, "used", "A"),
            prom(MEMORY_RSS, "rss", "B"),
            prom(MEMORY_PEAK, "peak", "C"),
            prom(MEMORY_MAX, "max", "D"),
            unit="bytes",
        )
    )
    board = board.with_panel(
        series_panel(
            "Keys per database",
            "Keys, and keys with a TTL, in each Redis database.",
            prom(KEYS, "{{db}} keys", "A"),
            prom(EXPIRING, "{{db}} expiring", "B"),
        )
    )
    board = board.with_panel(
        series_panel(
            "Evicted and expired keys/s",
            "Keys evicted for lack of memory (should stay 0: sessions would be lost) and keys "
            "expired by their TTL, per second.",
            prom(EVICTED, "evicted", "A"),
            prom(EXPIRED, "expired", "B"),
            unit="ops",
        )
    )
    board = board.with_panel(
        series_panel(
            "Clients and connections",
            "Connected and blocked clients, and new / rejected connections per second.",
            prom(CLIENTS, "connected", "A"),
            prom(BLOCKED, "blocked", "B"),
            prom(CONNECTIONS, "new connections/s", "C"),
            prom(REJECTED, "rejected connections/s", "D"),
        )
    )
    board = board.with_panel(
        series_panel(
            "Memory fragmentation ratio",
            "RSS / used memory; well above 1.5 means fragmented memory.",
            prom(FRAGMENTATION, "fragmentation"),
            width=24,
        )
    )
    return finish(board)
