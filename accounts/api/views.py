from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed, NotFound, Throttled
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services, throttling
from accounts.api import serializers
from accounts.clientip import client_of
from core.conf import get_settings
from core.redis import REDIS_UNAVAILABLE


def _client(request) -> dict[str, str]:
    return client_of(request.META)


class PublicView(APIView):
    """Token endpoints: no authentication of their own, the body carries the credentials."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request):
        # Without it DRF turns our 401s into 403s (no authentication class to name a scheme).
        return 'Bearer realm="api"'


class LoginView(PublicView):
    @extend_schema(
        request=serializers.LoginSerializer,
        responses={
            200: serializers.TokenPairSerializer,
            401: OpenApiResponse(description="Bad credentials"),
            429: OpenApiResponse(description="Too many failed attempts; see Retry-After"),
        },
        summary="Log in: a JWT pair for a new session",
    )
    def post(self, request):
        body = serializers.LoginSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            pair = services.login(**body.validated_data, **_client(request))
        except services.LoginThrottled as exc:
            raise Throttled(wait=exc.retry_after, detail="Too many failed login attempts.") from exc
        except services.LoginFailed as exc:
            raise AuthenticationFailed(services.INVALID_CREDENTIALS) from exc
        return Response({"access": pair.access, "refresh": pair.refresh})

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if isinstance(exc, Throttled):
            throttling.refusal_response_logged(response)
        return response


class RefreshView(PublicView):
    @extend_schema(
        request=serializers.RefreshBodySerializer,
        responses={200: serializers.TokenPairSerializer},
        summary="Rotate the refresh token (same session)",
    )
    def post(self, request):
        body = serializers.RefreshBodySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            pair = services.token_refresh(
                raw_refresh=body.validated_data["refresh"], **_client(request)
            )
        except services.SessionEnded as exc:
            raise AuthenticationFailed("Session has ended; log in again.") from exc
        return Response({"access": pair.access, "refresh": pair.refresh})


class VerifyView(PublicView):
    @extend_schema(
        request=serializers.TokenBodySerializer,
        responses={200: None},
        summary="Check a token and its session",
    )
    def post(self, request):
        body = serializers.TokenBodySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            services.token_verify(raw_token=body.validated_data["token"])
        except services.SessionEnded as exc:
            raise AuthenticationFailed("Session has ended.") from exc
        return Response({})


class LogoutView(PublicView):
    @extend_schema(
        request=serializers.RefreshBodySerializer,
        responses={204: None},
        summary="End the session: refresh blacklisted, access token refused at once",
    )
    def post(self, request):
        body = serializers.RefreshBodySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.logout(raw_refresh=body.validated_data["refresh"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=serializers.MeSerializer, summary="The caller and its session")
    def get(self, request):
        sid = request.user.sid
        try:
            current = [
                view
                for view in selectors.sessions_for_user(user_id=request.user.id, current_sid=sid)
                if view.current
            ]
            tracking = "ok"
        except REDIS_UNAVAILABLE:
            current, tracking = [], "unavailable"
        data = {
            "user": serializers.UserSerializer(request.user.get_user()).data,
            "session": serializers.LiveSessionSerializer(current[0]).data if current else None,
            "tracking": tracking,
        }
        return Response(data)


class SessionPagination(LimitOffsetPagination):
    """`?limit=&offset=`; the default page size is SESSION_LIST_PAGE_SIZE."""

    max_limit = 1000

    @property  # read per request: the setting may change in tests
    def default_limit(self) -> int:  # type: ignore[override]
        return get_settings().SESSION_LIST_PAGE_SIZE


class SessionListView(GenericAPIView):
    permission_classes = [IsAuthenticated]
    serializer_class = serializers.LiveSessionSerializer
    pagination_class = SessionPagination

    @extend_schema(
        responses=serializers.LiveSessionSerializer(many=True),
        summary="The caller's live sessions, most recently active first (paginated)",
    )
    def get(self, request):
        views = selectors.sessions_for_user(user_id=request.user.id, current_sid=request.user.sid)
        # DRF paginates any sequence; the stubs ask for a QuerySet.
        page: list | None = self.paginate_queryset(views)  # type: ignore[arg-type]
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


class SessionRevokeOthersView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses=serializers.RevokedSerializer,
        summary="End all of the caller's sessions but the current one",
    )
    def post(self, request):
        revoked = services.sessions_revoke_others(
            user_id=request.user.id, current_sid=request.user.sid
        )
        return Response({"revoked": revoked})


class SessionDetailView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={204: None, 404: OpenApiResponse(description="Not your live session")},
        summary="End one of the caller's sessions",
    )
    def delete(self, request, sid: str):
        if not services.session_revoke_own(user_id=request.user.id, sid=sid):
            raise NotFound("No such live session.")
        return Response(status=status.HTTP_204_NO_CONTENT)
