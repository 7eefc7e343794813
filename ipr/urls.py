from django.contrib import admin
from django.urls import include, path

from ipr.traffic import metrics, quality_metrics, views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics.view, name="metrics"),
    path("metrics/quality", quality_metrics.view, name="metrics-quality"),
    path("api/", include("ipr.api.urls")),
    # The pages and reports (login required), last: they own the root.
    path("", include("ipr.web.urls")),
]
