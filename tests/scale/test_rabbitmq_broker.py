"""Celery's broker on its own URL: RabbitMQ (`CELERY_BROKER_URL=amqp://…`), the way a Redis
Cluster deployment runs it (kombu has no Redis Cluster transport).

Real processes: gunicorn, a Celery worker and beat whose broker is the machine's RabbitMQ (a
virtual host of the test's own), results and live sessions in the test Redis. Beat schedules
the heartbeat and the sync through RabbitMQ; the workload's totals reach PostgreSQL exactly,
and no task ever passes through Redis.
"""

import pytest
from celery import Celery

from tests.reliability.helpers import PASSWORD, TRACKED, Load, settle_and_assert_exact, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

USERS = 5
SESSIONS = 20
BEAT = {"SYNC_INTERVAL": 1, "CELERY_HEARTBEAT_INTERVAL": 1}


def test_worker_and_beat_run_the_sync_through_rabbitmq(
    stack, rabbitmq_vhost, django_user_model, capsys
):
    broker = {"CELERY_BROKER_URL": rabbitmq_vhost.url}
    stack.celery = Celery(
        "scale-client", broker=rabbitmq_vhost.url, backend=stack.redis_url, set_as_current=False
    )
    stack.celery.conf.update(accept_content=["json"], task_serializer="json")
    usernames = [f"rabbit{n}" for n in range(USERS)]
    for name in usernames:
        django_user_model.objects.create_user(username=name, password=PASSWORD)
    stack.start_web()
    tokens = stack.login_many([usernames[n % USERS] for n in range(SESSIONS)])
    assert stack.login("nobody", "wrong").status_code == 401
    load = Load(stack.web_url, TRACKED, tokens, max_requests=600).start()
    try:
        worker = stack.start_worker("worker", concurrency=2, **BEAT, **broker)
        stack.start_beat("beat", **BEAT, **broker)
        wait_until(lambda: stack.stat("sync_runs:ok") >= 3, 60, 0.2, "syncs run by beat")
    finally:
        load.stop()
    assert load.errors == [] and load.ok == sum(load.statuses.values()), load.summary()
    assert "amqp://guest:**@127.0.0.1:5672/" in worker.log()

    totals = settle_and_assert_exact(
        stack, stack.database_url, calls=load.ok, logins=SESSIONS, failed_logins=1
    )
    assert stack.stat("sync_runs:error") == 0
    # Every task went through RabbitMQ: its `celery` queue exists there, and Redis never held
    # a Celery queue (kombu's Redis transport keeps one as a list named after the queue).
    assert "celery" in rabbitmq_vhost.queues()
    assert stack.redis.exists("celery", "_kombu.binding.celery") == 0
    with capsys.disabled():
        print(
            f"\n[rabbitmq broker] {load.ok} calls on {SESSIONS} sessions; "
            f"{stack.stat('sync_runs:ok')} beat-driven syncs through RabbitMQ; "
            f"PostgreSQL: {totals['calls']} calls, {totals['events']} events (exact)"
        )
