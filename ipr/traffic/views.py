from django.http import JsonResponse

from ipr.traffic import health, metrics


def healthz(request):
    """For load balancers and monitoring: 200 when healthy, 503 when not.

    Anyone gets ``ok`` (and the status code); the reasons, the database kind
    and the spool's figures only a staff user or a caller /metrics would
    answer (its token, or this host with no proxy in between), as they name
    paths and software. A change of health is logged once (health.log_change),
    not each 503."""
    report = health.check()
    health.log_change(report)
    staff = getattr(request, "user", None) is not None and request.user.is_active and request.user.is_staff
    body = report if staff or metrics.refusal(request) is None else {"ok": report["ok"]}
    response = JsonResponse(body, status=200 if report["ok"] else 503)
    response._has_been_logged = True  # not django.request's error for each unhealthy poll
    return response
