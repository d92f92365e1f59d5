import os

from celery import Celery

from sessionhub import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sessionhub.settings.local")

broker.register()  # before any broker connection: see sessionhub/broker.py
app = Celery("sessionhub", include=["observability.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
