from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_replace
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from ipr.api import views

# Swagger UI and Redoc write <style> elements and style attributes: on these
# two pages only, inline styles are allowed (replacing the hashes, which
# would make a browser ignore 'unsafe-inline'), and Redoc runs its search in
# a worker made from a blob: URL. Still no inline script: Swagger UI's
# set-up script is served apart, by the split view.
docs_page = csp_replace({"style-src": [SELF, UNSAFE_INLINE], "worker-src": [SELF, "blob:"]})

urlpatterns = [
    path("", views.ApiRoot.as_view(), name="api-root"),
    path("totals/", views.TotalsView.as_view(), name="api-totals"),
    path("series/", views.SeriesView.as_view(), name="api-series"),
    path("top/<str:by>/", views.TopView.as_view(), name="api-top"),
    path("flows/", views.FlowsView.as_view(), name="api-flows"),
    path("asns/<str:asn>/", views.AsnView.as_view(), name="api-asn"),
    path("countries/<str:country>/", views.CountryView.as_view(), name="api-country"),
    path("reports/top-asns/", views.TopAsnsReport.as_view(), name="api-report-top-asns"),
    path("reports/peering/", views.PeeringReport.as_view(), name="api-report-peering"),
    path("reports/countries/", views.CountriesReport.as_view(), name="api-report-countries"),
    path("reports/delivery/", views.DeliveryReport.as_view(), name="api-report-delivery"),
    path("reports/uplinks/", views.UplinksReport.as_view(), name="api-report-uplinks"),
    path("reports/regressions/", views.RegressionsReport.as_view(), name="api-report-regressions"),
    path("routers/", views.RouterList.as_view(), name="api-routers"),
    path("traffic-types/", views.TrafficTypeList.as_view(), name="api-traffic-types"),
    path("as-names/", views.ASNameList.as_view(), name="api-as-names"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", docs_page(SpectacularSwaggerSplitView.as_view(url_name="api-schema")), name="api-docs"),
    path("redoc/", docs_page(SpectacularRedocView.as_view(url_name="api-schema")), name="api-redoc"),
    path("redoc/redoc.standalone.js", views.redoc_bundle, name="api-redoc-bundle"),
    # Log in and out of the browsable API (session authentication).
    path("auth/", include("rest_framework.urls")),
]
