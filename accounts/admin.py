from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from accounts.models import SessionEndRequest, User

admin.site.register(User, UserAdmin)


@admin.register(SessionEndRequest)
class SessionEndRequestAdmin(admin.ModelAdmin):
    """Recorded ends of sessions, read-only: whether each has reached Redis yet."""

    list_display = ("requested_at", "user_id", "sid", "reason", "actor_id", "applied_at")
    list_filter = ("reason", ("applied_at", admin.EmptyFieldListFilter))
    search_fields = ("=user_id", "=sid")
    ordering = ("-requested_at",)
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
