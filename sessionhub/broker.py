"""kombu's Redis transports with one fault fixed: a worker must survive its broker going away
while it holds a task.

When the connection to the broker breaks (a Redis restart, a Sentinel fail-over), the Celery
worker closes the connection and opens a new one. Closing a channel gives back the messages it
had delivered and not yet acknowledged — with `acks_late`, the task running at that moment —
through a new connection pool, built from the connection's parameters. In kombu 5.7 the
connection has by then been detached from its transport (`transport.client` is None), so
building the pool raises AttributeError; that is not one of the errors the worker ignores while
closing a broken connection, and the worker stops with "Unrecoverable error" and consumes
nothing more (seen with a Sentinel fail-over during a sync run: tests/scale/
test_redis_sentinel.py).

Here the channel reports that state as what it is, a connection error: the worker ignores it,
reconnects and goes on. The message that could not be given back stays in Redis's table of
unacknowledged messages and is delivered again after the visibility timeout, like any message
whose worker vanished — the tasks it concerns are idempotent (the sync, the jobs of beat).

`register()` (called by sessionhub.celery) points kombu's `redis`, `rediss` and `sentinel` URL
schemes at these classes.
"""

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError


def _attached(channel) -> None:
    if channel.connection.client is None:
        raise RedisConnectionError("the broker connection is closed")


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous=False):
        _attached(self)
        return super()._connparams(asynchronous=asynchronous)


class SentinelChannel(kombu_redis.SentinelChannel):
    def _connparams(self, asynchronous=False):
        _attached(self)
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


def register() -> None:
    TRANSPORT_ALIASES.update(
        redis=f"{__name__}:Transport",
        rediss=f"{__name__}:Transport",
        sentinel=f"{__name__}:SentinelTransport",
    )
