"""The two endpoints every design is measured behind (the authentication class is the variable).

* trivial   — a tiny JSON answer: the request path is almost all framework and tracking.
* realistic — one indexed SQL read (the user's row by primary key, whatever the design) and a
              JSON body of about 1 KB built by a DRF serializer.
"""

from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User

ITEMS = 8


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email", "first_name", "last_name", "is_staff", "date_joined"]


class TrivialView(APIView):
    def get(self, request):
        return Response({"ok": True})


class RealisticView(APIView):
    def get(self, request):
        user = User.objects.get(pk=request.user.id)
        items = [
            {
                "id": user.pk * 100 + i,
                "title": f"Quarterly report {i} for {user.username}",
                "status": "open" if i % 3 else "closed",
                "updated_at": user.date_joined.isoformat(),
            }
            for i in range(ITEMS)
        ]
        return Response({"user": UserSerializer(user).data, "items": items, "count": ITEMS})
