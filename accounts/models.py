from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """The project's user model, custom from the first migration so it can grow."""

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
        db_table = "accounts_user"
