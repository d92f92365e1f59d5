from django.urls import path

from analytics.api import views

urlpatterns = [
    path("overview/", views.OverviewView.as_view(), name="analytics-overview"),
    path("overview/live/", views.OverviewLiveView.as_view(), name="analytics-overview-live"),
    path("power-users/", views.PowerUsersView.as_view(), name="analytics-power-users"),
    path("idle-users/", views.IdleUsersView.as_view(), name="analytics-idle-users"),
    path("live-sessions/", views.LiveSessionsView.as_view(), name="analytics-live-sessions"),
    path("sessions/", views.SessionHistoryView.as_view(), name="analytics-sessions"),
    path("security/", views.SecurityView.as_view(), name="analytics-security"),
    path("suspicious-ips/", views.SuspiciousIpsView.as_view(), name="analytics-suspicious-ips"),
    path("users/<int:user_id>/", views.UserDetailView.as_view(), name="analytics-user"),
]
