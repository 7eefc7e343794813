from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from ipr.api import views

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
    path("routers/", views.RouterList.as_view(), name="api-routers"),
    path("traffic-types/", views.TrafficTypeList.as_view(), name="api-traffic-types"),
    path("as-names/", views.ASNameList.as_view(), name="api-as-names"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    # Log in and out of the browsable API (session authentication).
    path("auth/", include("rest_framework.urls")),
]
