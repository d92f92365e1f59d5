"""sessionhub.broker: the worker's broker transports survive a broken connection while a task
is held (the end-to-end case, a Sentinel fail-over during a sync run, is
tests/scale/test_redis_sentinel.py)."""

import contextlib
import secrets

import pytest
from django.conf import settings
from kombu import Connection
from kombu.common import ignore_errors

from core.redis import get_redis
from sessionhub import broker
from sessionhub.celery import app


def test_the_app_connects_through_the_fixed_transports():
    with app.connection_for_write() as connection:
        assert type(connection.transport) is broker.Transport
    sentinel = Connection("sentinel://127.0.0.1:26379/0", transport_options={"master_name": "m"})
    assert sentinel.get_transport_cls() is broker.SentinelTransport


@pytest.mark.parametrize(
    ("transport", "fails_with"),
    [("kombu.transport.redis:Transport", AttributeError), (None, None)],
    ids=["kombu's own", "sessionhub.broker"],
)
def test_closing_a_channel_detached_from_its_transport_with_a_task_held(transport, fails_with):
    """What the worker does after a broken connection: the connection detached from its
    transport, then closed, its channel giving back the message it holds. kombu's own channel
    raises AttributeError there (the worker stops); ours a connection error, which closing a
    broken connection ignores (the worker reconnects). The day kombu's own stops raising,
    sessionhub.broker can go."""
    queue = f"broker-test-{secrets.token_hex(4)}"
    connection = Connection(settings.CELERY_BROKER_URL, transport=transport)
    try:
        simple = connection.SimpleQueue(queue)
        simple.put({"task": "held"})
        message = simple.get(timeout=5)  # delivered, not acknowledged (acks_late)
        assert message.payload == {"task": "held"}
        channel = simple.channel
        channel.connection.client = None  # as kombu leaves it when the socket broke

        def close() -> None:
            ignore_errors(connection, channel.close)

        if fails_with is None:
            close()
        else:
            with pytest.raises(fails_with):
                close()
    finally:
        with contextlib.suppress(Exception):  # the channel was left half-closed on purpose
            connection.release()
        get_redis().delete(queue, "unacked", "unacked_index")
