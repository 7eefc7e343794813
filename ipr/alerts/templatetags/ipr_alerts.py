"""The dashboard's "what got worse" panel: ``{% regress_panel range filters as panel %}``."""
from django import template
from django.core.cache import cache
from django.urls import reverse
from django.utils.http import urlencode

from ipr.alerts.models import Alert
from ipr.web import regress
from ipr.web.queries import PRESETS, Filters, Range

register = template.Library()

PANEL_ROWS = 5      # the worst findings shown of each: origin ASes, uplinks
PANEL_ALERTS = 10   # the newest firing alerts shown
PANEL_CACHE_SECONDS = 60
PANEL_PRESET = "24h"  # the panel compares at most the range's last day


def panel_range(rng: Range) -> Range:
    """The range's last day (PANEL_PRESET's length) up to now, or the whole range when it
    is shorter: what the panel compares. A comparison reads both periods
    per time bucket, a cost that grows with the range (a year's, over
    36,000 origin ASes, takes seconds); the report compares any range."""
    length = PRESETS[PANEL_PRESET][1]
    if rng.end - rng.start <= length or rng.now <= rng.start:
        return rng
    if rng.end >= rng.now:  # a range up to now: the preset
        return Range.last(PANEL_PRESET, rng.now)
    return Range.between(rng.end - length, rng.end, rng.now)


@register.simple_tag
def regress_panel(rng, filters=None) -> dict:
    """The worst findings of the range among origin ASes and among uplinks
    (against the default baseline), and the firing alerts."""
    from ipr.web.regress_views import decorate
    filters = filters or Filters()
    rng = panel_range(rng)
    link = {**rng.params(), **{k: v for k, v in filters.params().items() if k in ("router", "type")}}
    # Kept a minute (per process, Django's default cache): the comparison
    # reads both periods per time bucket, which costs the dashboard tens to
    # hundreds of ms; the alerts below are read at every view.
    key = "ipr-regress-panel:" + "|".join([rng.start.isoformat(), rng.end.isoformat(), str(rng.preset),
                                           urlencode(sorted(filters.params().items()))])
    kinds = cache.get(key)
    if kinds is None:
        kinds = [decorate(regress.regressions(rng, kind, filters, limit=PANEL_ROWS), link)
                 for kind in ("origin_as", "uplink")]
        cache.set(key, kinds, PANEL_CACHE_SECONDS)
    open_ = Alert.objects.filter(resolved__isnull=True)
    return {"kinds": kinds, "alerts": list(open_.select_related("rule").order_by("-started")[:PANEL_ALERTS]),
            "firing": open_.count(), "url": reverse("web:report_regressions") + "?" + urlencode(link),
            "range": rng}
