from core import clock
from core.redis import get_redis
from core.rediskeys import keys


def celery_heartbeat_record() -> float:
    stamp = clock.now()
    get_redis().set(keys.celery_heartbeat(), repr(stamp))
    return stamp
