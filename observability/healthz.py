from django.http import JsonResponse

from observability import selectors


def healthz(request):
    """200 when PostgreSQL and Redis both answer; 503 naming the part that does not."""
    checks = selectors.health_check()
    failing = [name for name, state in checks.items() if state != "ok"]
    body = {"status": "ok" if not failing else "degraded", "checks": checks, "failing": failing}
    return JsonResponse(body, status=503 if failing else 200)
