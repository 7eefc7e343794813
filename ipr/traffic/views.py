from django.http import JsonResponse

from ipr.traffic import health


def healthz(request):
    """For load balancers and monitoring: 200 when healthy, 503 with reasons when not."""
    report = health.check()
    return JsonResponse(report, status=200 if report["ok"] else 503)
