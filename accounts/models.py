from django.contrib.auth.models import AbstractUser
from django.db import transaction


class User(AbstractUser):
    """The project's user model, custom from the first migration so it can grow.

    Changing the password or deactivating the user ends all of the user's sessions, whatever
    path the change takes (admin, API, shell, `changepassword`), once the change commits.
    `QuerySet.update()` bypasses `save()`; use the services for bulk changes.
    """

    class Meta(AbstractUser.Meta):
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
        previous_password = getattr(self, "_saved_password", None)
        previous_active = getattr(self, "_saved_is_active", None)
        super().save(*args, **kwargs)
        password_changed = (
            previous_password is not None
            and self.password != previous_password
            and not getattr(self, "_rehashing", False)
        )
        deactivated = previous_active is True and not self.is_active
        self._remember_security_state()
        if password_changed or deactivated:
            from accounts.services import user_security_changed

            user_id = self.pk
            transaction.on_commit(
                lambda: user_security_changed(
                    user_id=user_id, password_changed=password_changed, deactivated=deactivated
                )
            )

    def delete(self, *args, **kwargs):
        from accounts.events import EndReason
        from accounts.services import sessions_end_for_user

        user_id = self.pk
        result = super().delete(*args, **kwargs)
        transaction.on_commit(
            lambda: sessions_end_for_user(user_id=user_id, reason=EndReason.USER_DISABLED)
        )
        return result
