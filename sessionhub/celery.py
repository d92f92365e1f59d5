import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sessionhub.settings.local")

app = Celery("sessionhub", include=["observability.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
