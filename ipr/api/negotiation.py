"""Content negotiation of the API (REST_FRAMEWORK's
DEFAULT_CONTENT_NEGOTIATION_CLASS): a format an endpoint does not have is
an error that says why. Apart from ipr.api.renderers, which the settings
cannot import before DRF's views are loaded."""
from django.http import Http404
from rest_framework.exceptions import NotAcceptable, ParseError
from rest_framework.negotiation import DefaultContentNegotiation

CSV_TYPE = "text/csv"


class Negotiation(DefaultContentNegotiation):
    """DRF's negotiation, with errors that say why: a ``?format=`` the
    endpoint does not have is a bad parameter value, a 400 naming it (DRF
    answers a bare 404); an Accept header it cannot meet a 406 that says
    which formats it has. CSV asked of an endpoint that is not a table
    says so."""

    def select_renderer(self, request, renderers_, format_suffix=None):
        formats = ", ".join(r.format for r in renderers_ if r.format != "api")
        if request.query_params.get(self.settings.URL_FORMAT_OVERRIDE) == "":
            # (DRF would take it as not given; a choice must have a value.)
            raise ParseError(f"format: give one of {formats}, or leave the parameter out")
        try:
            return super().select_renderer(request, renderers_, format_suffix)
        except (Http404, NotAcceptable):
            asked = format_suffix or request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
            if asked == "csv" or (not asked and CSV_TYPE in request.META.get("HTTP_ACCEPT", "")):
                why = (f"this endpoint answers no table, so it has no CSV form (it answers {formats}); the "
                       "totals, series, top-N, flows, reports, routers, traffic types and AS names endpoints do")
                raise (ParseError(f"format: {why}") if asked else NotAcceptable(why)) from None
            if asked:
                raise ParseError(f"format: no {asked!r} form of this endpoint (it answers {formats})") from None
            raise NotAcceptable(f"no answer of this endpoint meets the Accept header (it answers {formats})") \
                from None
