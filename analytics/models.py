"""Analytics are SQL views over the audit tables and the rollups kept from them (see the
migrations and analytics/rollups.py).

The admin and Grafana read the same views, so the two can never disagree. The models here are
read-only windows on them (managed = False), plus the thresholds table the views read.
"""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models


class AnalyticsSetting(models.Model):
    """Thresholds the SQL views read (copied from settings by analytics.services)."""

    name = models.CharField(primary_key=True, max_length=64)
    value = models.IntegerField()

    class Meta:
        db_table = "analytics_setting"

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


class AnalyticsAccess(models.Model):
    """Carries the analytics permissions; it has no table."""

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_analytics", "Can view analytics reports"),
            ("manage_sessions", "Can end sessions and lift lock-outs"),
        ]

    def __str__(self) -> str:
        return "analytics access"


class ReadOnlyView(models.Model):
    class Meta:
        abstract = True
        managed = False


class UserActivity(ReadOnlyView):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.DO_NOTHING, related_name="+"
    )
    username = models.CharField(max_length=150)
    email = models.EmailField()
    is_active = models.BooleanField()
    date_joined = models.DateTimeField()
    first_active = models.DateTimeField(null=True)
    last_active = models.DateTimeField(null=True)
    api_calls_24h = models.BigIntegerField()
    api_calls_7d = models.BigIntegerField()
    api_calls_30d = models.BigIntegerField()
    days_active_30d = models.IntegerField()
    status = models.CharField(max_length=16)
    never_active = models.BooleanField()

    class Meta(ReadOnlyView.Meta):
        db_table = "analytics_user_activity"
        verbose_name_plural = "user activity"

    def __str__(self) -> str:
        return self.username


class PowerUser(ReadOnlyView):
    id = models.TextField(primary_key=True)  # window:user_id, unique across the view
    window = models.CharField(max_length=8)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.DO_NOTHING, related_name="+"
    )
    username = models.CharField(max_length=150)
    api_calls = models.BigIntegerField()
    days_active_30d = models.IntegerField()
    last_active = models.DateTimeField(null=True)

    class Meta(ReadOnlyView.Meta):
        db_table = "analytics_power_users"

    def __str__(self) -> str:
        return f"{self.username} ({self.window})"


class IdleUser(ReadOnlyView):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.DO_NOTHING, related_name="+"
    )
    username = models.CharField(max_length=150)
    email = models.EmailField()
    date_joined = models.DateTimeField()
    last_active = models.DateTimeField(null=True)
    idle_days = models.IntegerField(null=True)
    never_active = models.BooleanField()

    class Meta(ReadOnlyView.Meta):
        db_table = "analytics_idle_users"

    def __str__(self) -> str:
        return self.username


class SuspiciousIp(ReadOnlyView):
    """Addresses past the threshold in the last 24 hours (the security page and the API read
    any window through analytics.selectors.suspicious_ips)."""

    id = models.TextField(primary_key=True)  # the address
    ip = models.GenericIPAddressField()
    user_agent_count = models.IntegerField()
    user_agents = ArrayField(models.TextField())  # the first 10, alphabetically
    attempts = models.IntegerField()
    usernames_tried = models.IntegerField()
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta(ReadOnlyView.Meta):
        db_table = "analytics_suspicious_ips"
        verbose_name = "suspicious IP"

    def __str__(self) -> str:
        return str(self.ip)


class DailyRollup(ReadOnlyView):
    day = models.DateField(primary_key=True)
    dau = models.IntegerField()
    wau = models.IntegerField()
    mau = models.IntegerField()
    sessions_started = models.IntegerField()
    api_calls = models.BigIntegerField()
    logins = models.IntegerField()
    failed_logins = models.IntegerField()
    duration_p50 = models.FloatField(null=True)
    duration_p95 = models.FloatField(null=True)

    class Meta(ReadOnlyView.Meta):
        db_table = "analytics_daily"

    def __str__(self) -> str:
        return str(self.day)
