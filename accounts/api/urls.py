from django.urls import path

from accounts.api import views

urlpatterns = [
    path("auth/token/", views.LoginView.as_view(), name="token-obtain"),
    path("auth/token/refresh/", views.RefreshView.as_view(), name="token-refresh"),
    path("auth/token/verify/", views.VerifyView.as_view(), name="token-verify"),
    path("auth/logout/", views.LogoutView.as_view(), name="logout"),
    path("me/", views.MeView.as_view(), name="me"),
    path("sessions/", views.SessionListView.as_view(), name="sessions"),
    path(
        "sessions/revoke-others/",
        views.SessionRevokeOthersView.as_view(),
        name="sessions-revoke-others",
    ),
    path("sessions/<str:sid>/", views.SessionDetailView.as_view(), name="session-detail"),
]
