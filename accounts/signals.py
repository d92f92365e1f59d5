"""A deleted user's sessions end as soon as the deletion commits.

The deletion itself is recorded by a database trigger (so `QuerySet.delete()`, the admin's
bulk delete and raw SQL all count); this only applies it in Redis without waiting for the
beat job. Django sends `post_delete` for queryset deletes too.
"""

from django.db.models.signals import post_delete
from django.dispatch import receiver

from . import services
from .models import User


@receiver(post_delete, sender=User)
def user_deleted(sender, instance: User, **kwargs) -> None:
    services.session_ends_apply_after_commit(user_id=instance.pk)
