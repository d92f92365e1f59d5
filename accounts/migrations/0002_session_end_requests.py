"""Ends of sessions recorded in PostgreSQL (accounts.models.SessionEndRequest), and the
triggers that record them for every deactivation and deletion of a user, whatever path it
takes: `save()`, `QuerySet.update()`, `QuerySet.delete()`, the admin's bulk delete, raw SQL.

Deactivation: a row trigger, filtered by its WHEN clause before any function runs (other
updates of a user cost nothing). Deletion: a statement trigger over the deleted rows, one
INSERT however many users one statement deletes. `clock_timestamp()`: as late as the change
itself, so sessions opened before it are covered.
"""

from django.db import migrations, models

TRIGGERS = """
CREATE FUNCTION accounts_user_deactivated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO accounts_session_end_request (user_id, sid, reason, requested_at)
    VALUES (NEW.id, '', 'user_disabled', clock_timestamp());
    RETURN NULL;
END $$;

CREATE TRIGGER accounts_user_deactivated
AFTER UPDATE OF is_active ON accounts_user
FOR EACH ROW WHEN (OLD.is_active AND NOT NEW.is_active)
EXECUTE FUNCTION accounts_user_deactivated();

CREATE FUNCTION accounts_user_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO accounts_session_end_request (user_id, sid, reason, requested_at)
    SELECT id, '', 'user_disabled', clock_timestamp() FROM deleted_users WHERE is_active;
    RETURN NULL;
END $$;

CREATE TRIGGER accounts_user_deleted
AFTER DELETE ON accounts_user
REFERENCING OLD TABLE AS deleted_users
FOR EACH STATEMENT
EXECUTE FUNCTION accounts_user_deleted();
"""

DROP_TRIGGERS = """
DROP TRIGGER accounts_user_deleted ON accounts_user;
DROP FUNCTION accounts_user_deleted();
DROP TRIGGER accounts_user_deactivated ON accounts_user;
DROP FUNCTION accounts_user_deactivated();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="SessionEndRequest",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("user_id", models.BigIntegerField()),
                ("sid", models.CharField(blank=True, max_length=64)),
                (
                    "reason",
                    models.CharField(
                        choices=[
                            ("logout", "Logout"),
                            ("idle_timeout", "Idle timeout"),
                            ("absolute_timeout", "Absolute timeout"),
                            ("revoked", "Revoked"),
                            ("password_changed", "Password changed"),
                            ("user_disabled", "User disabled"),
                            ("anomaly", "Used from two places at once"),
                            ("refresh_reuse", "Refresh token reused"),
                            ("session_limit", "Session limit reached"),
                        ],
                        max_length=32,
                    ),
                ),
                ("actor_id", models.BigIntegerField(blank=True, null=True)),
                ("requested_at", models.DateTimeField()),
                ("applied_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "verbose_name": "session end request",
                "db_table": "accounts_session_end_request",
                "indexes": [
                    models.Index(fields=["user_id", "requested_at"], name="session_end_user_time"),
                    models.Index(fields=["requested_at"], name="session_end_time"),
                    models.Index(
                        condition=models.Q(("applied_at__isnull", True)),
                        fields=["id"],
                        name="session_end_pending",
                    ),
                ],
            },
        ),
        migrations.RunSQL(TRIGGERS, DROP_TRIGGERS),
    ]
