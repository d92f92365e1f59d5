from django.contrib.auth.models import AbstractUser
from django.db import models, transaction

from .events import EndReason


class User(AbstractUser):
    """The project's user model, custom from the first migration so it can grow.

    Every change that must end the user's sessions is recorded in PostgreSQL in the
    transaction that makes it (SessionEndRequest), whatever path it takes:

    * a password change — here, in `save()` (admin, API, shell, `changepassword`); a login that
      only re-hashes the same password is not one;
    * a deactivation or a deletion — by database triggers on ``accounts_user`` (migration
      0002), so `QuerySet.update(is_active=False)`, the admin's bulk delete and raw SQL are
      covered too.

    The sessions end in Redis once the change commits, or, while Redis does not answer, when
    the beat job finds it back; meanwhile their refresh tokens are refused.
    """

    class Meta(AbstractUser.Meta):  # type: ignore[name-defined]  # django-stubs omits it
        swappable = "AUTH_USER_MODEL"
        db_table = "accounts_user"

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._remember_security_state()
        return instance

    def _remember_security_state(self) -> None:
        self._saved_password = self.__dict__.get("password")
        self._saved_is_active = self.__dict__.get("is_active")

    def check_password(self, raw_password):
        # A successful check may re-hash the same password with newer parameters; that is not
        # a password change and must not end the user's sessions.
        self._rehashing = True
        try:
            return super().check_password(raw_password)
        finally:
            self._rehashing = False

    def save(self, *args, **kwargs):
        from accounts import services

        previous_password = getattr(self, "_saved_password", None)
        previous_active = getattr(self, "_saved_is_active", None)
        with transaction.atomic(using=kwargs.get("using")):
            super().save(*args, **kwargs)
            password_changed = (
                previous_password is not None
                and self.password != previous_password
                and not getattr(self, "_rehashing", False)
            )
            deactivated = previous_active is True and not self.is_active
            if password_changed:
                services.session_end_request_record(
                    user_id=self.pk, reason=EndReason.PASSWORD_CHANGED
                )
            if password_changed or deactivated:
                services.session_ends_apply_after_commit(user_id=self.pk)
        self._remember_security_state()


class SessionEndRequest(models.Model):
    """Sessions to end, recorded in the transaction that calls for it (an outbox).

    `sid` names one session; blank, every session of the user opened at or before
    `requested_at` (a later login, e.g. with the new password, is not touched). Applied in
    Redis right after the commit when Redis answers, else by the `session_ends_apply` beat
    job; re-applied for an access-token lifetime afterwards (a web process may still bring a
    session it opened during an outage). A refresh reads this table: a session named here is
    refused at once, whether or not Redis has heard of it. Kept for the absolute timeout —
    no session it names can live longer.
    """

    # No foreign key: the sessions of a deleted user must end too.
    user_id = models.BigIntegerField()
    sid = models.CharField(max_length=64, blank=True)
    reason = models.CharField(max_length=32, choices=EndReason.choices)
    actor_id = models.BigIntegerField(null=True, blank=True)
    requested_at = models.DateTimeField()
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "accounts_session_end_request"
        verbose_name = "session end request"
        indexes = [
            models.Index(fields=["user_id", "requested_at"], name="session_end_user_time"),
            models.Index(fields=["requested_at"], name="session_end_time"),
            models.Index(
                fields=["id"],
                name="session_end_pending",
                condition=models.Q(applied_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        what = f"session {self.sid}" if self.sid else f"sessions of user {self.user_id}"
        return f"end {what}: {self.reason}"
