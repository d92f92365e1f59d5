from rest_framework import serializers

from accounts.livesessions import SessionStatus
from accounts.models import User
from core import clock


def no_surrogates(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise serializers.ValidationError("Text must be valid Unicode.") from exc


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField(
        max_length=150, trim_whitespace=False, validators=[no_surrogates]
    )
    password = serializers.CharField(
        max_length=4096,
        trim_whitespace=False,
        write_only=True,
        validators=[no_surrogates],
        style={"input_type": "password"},
    )


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class RefreshBodySerializer(serializers.Serializer):
    refresh = serializers.CharField(max_length=4096, validators=[no_surrogates])


class TokenBodySerializer(serializers.Serializer):
    token = serializers.CharField(max_length=4096, validators=[no_surrogates])


class UserSerializer(serializers.ModelSerializer):
    # Blank for users without one (the first admin has none): not documented as format "email".
    email = serializers.CharField(read_only=True)

    class Meta:
        model = User
        fields = ["id", "username", "email", "first_name", "last_name", "is_staff"]
        read_only_fields = fields


def _iso(ts: float | None) -> str | None:
    return clock.to_datetime(ts).isoformat() if ts is not None else None


class LiveSessionSerializer(serializers.Serializer):
    sid = serializers.CharField(source="session.sid")
    ip = serializers.CharField(source="session.ip")
    user_agent = serializers.CharField(source="session.user_agent")
    started_at = serializers.SerializerMethodField()
    last_active = serializers.SerializerMethodField()
    api_call_count = serializers.IntegerField(source="session.api_call_count")
    status = serializers.ChoiceField(choices=SessionStatus.choices())
    current = serializers.BooleanField()

    def get_started_at(self, obj) -> str | None:
        return _iso(obj.session.started_at)

    def get_last_active(self, obj) -> str | None:
        return _iso(obj.session.last_active)


class MeSerializer(serializers.Serializer):
    user = UserSerializer()
    session = LiveSessionSerializer(allow_null=True)
    tracking = serializers.ChoiceField(choices=["ok", "unavailable"])


class RevokedSerializer(serializers.Serializer):
    revoked = serializers.IntegerField()
