"""Network types for models: ASNs and IP networks.

On PostgreSQL a network is stored as ``cidr`` (so the database checks it and
can index containment); on SQLite as text. Either way Python sees the
canonical text ('192.0.2.0/24').
"""
import ipaddress

from django.core import validators
from django.core.exceptions import ValidationError
from django.db import models

ASN_MAX = 2**32 - 1


def format_asn(asn: int | None, asdot: bool = False) -> str:
    """'AS64500', or 'AS1.10' in asdot notation for 4-byte ASNs."""
    if asn is None:
        return ""
    if asdot and asn > 65535:
        return f"AS{asn >> 16}.{asn & 0xFFFF}"
    return f"AS{asn}"


class ASNField(models.BigIntegerField):
    """A 32-bit AS number (0..4294967295)."""

    default_validators = [validators.MinValueValidator(0), validators.MaxValueValidator(ASN_MAX)]


def canonical_network(value: str) -> str:
    """'192.0.2.0/24' from any spelling; host bits set are an error."""
    try:
        return str(ipaddress.ip_network(str(value).strip(), strict=True))
    except ValueError as exc:
        raise ValidationError(f"{value!r} is not a network: {exc}") from None


class NetworkField(models.CharField):
    """An IPv4 or IPv6 network: ``cidr`` on PostgreSQL, text elsewhere."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", 43)
        super().__init__(*args, **kwargs)

    def db_type(self, connection):
        if connection.vendor == "postgresql":
            return "cidr"
        return super().db_type(connection)

    def to_python(self, value):
        if value is None or value == "":
            return value
        return canonical_network(value)

    def from_db_value(self, value, expression, connection):
        return None if value is None else str(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return None if value in (None, "") else canonical_network(value)
