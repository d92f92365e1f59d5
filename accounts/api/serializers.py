from rest_framework import serializers

from accounts.models import User


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email", "first_name", "last_name", "is_staff"]
        read_only_fields = fields


class RefreshBodySerializer(serializers.Serializer):
    refresh = serializers.CharField(max_length=4096, trim_whitespace=True)
