from django.contrib.auth import views as auth_views
from django.urls import path

from ipr.web import regress_views, views

app_name = "web"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("asn/<str:asn>", views.asn, name="asn"),
    path("neighbor/<str:asn>", views.neighbor, name="neighbor"),
    path("country/<str:code>", views.country, name="country"),
    path("prefix/<path:prefix>", views.prefix, name="prefix"),
    path("router/<int:router_id>", views.router, name="router"),
    path("type/<str:name>", views.traffic_type, name="traffic_type"),
    path("search", views.search, name="search"),
    path("reports/", views.reports_index, name="reports"),
    path("reports/top-asns", views.report_top_asns, name="report_top_asns"),
    path("reports/peering", views.report_peering, name="report_peering"),
    path("reports/countries", views.report_countries, name="report_countries"),
    path("reports/quality", views.report_quality, name="report_quality"),
    path("reports/uplinks", views.report_uplinks, name="report_uplinks"),
    path("reports/regressions", regress_views.report_regressions, name="report_regressions"),
    # Django's own login and logout, at Django's default LOGIN_URL.
    path("accounts/login/", auth_views.LoginView.as_view(next_page="/", redirect_authenticated_user=True),
         name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="/accounts/login/"), name="logout"),
]
