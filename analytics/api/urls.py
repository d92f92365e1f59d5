from django.urls import path

from analytics.api import views

# One label for every report in the metrics (analytics.http_metrics), as the admin is one.
app_name = "analytics_api"

urlpatterns = [
    path("overview/", views.OverviewView.as_view(), name="overview"),
    path("overview/live/", views.OverviewLiveView.as_view(), name="overview-live"),
    path("power-users/", views.PowerUsersView.as_view(), name="power-users"),
    path("idle-users/", views.IdleUsersView.as_view(), name="idle-users"),
    path("live-sessions/", views.LiveSessionsView.as_view(), name="live-sessions"),
    path("sessions/", views.SessionHistoryView.as_view(), name="sessions"),
    path("security/", views.SecurityView.as_view(), name="security"),
    path("suspicious-ips/", views.SuspiciousIpsView.as_view(), name="suspicious-ips"),
    path("users/<int:user_id>/", views.UserDetailView.as_view(), name="user"),
]
