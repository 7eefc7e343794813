from django import template

from ipr.web import units

register = template.Library()
register.filter("bytes", units.human_bytes)
register.filter("bps", units.human_bps)
register.filter("pct", units.human_pct)
register.filter("ms", units.human_ms)
register.filter("int", units.human_int)


@register.filter
def get(mapping, key):
    return mapping.get(key) if hasattr(mapping, "get") else None
