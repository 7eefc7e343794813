"""What the agents send with: the traffic types they tag records with, and
the keys they sign datagrams with.

The keys live here, in the database, and are published to the collector as
its key file (ipr.agents.keyfile), because the collector reads no database
on its hot path. A traffic type is only a name on the wire and in the
archive's ``traffic_type`` column; this model gives it a label for people.
"""
import hashlib
import ipaddress
import secrets

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from ipr_agent import wire

# What both agents send: at most 16 bytes of printable ASCII (the nginx
# module cuts longer values; the WSGI agent cuts longer names).
TRAFFIC_TYPE_NAME = RegexValidator(r"^[\x21-\x7e]{1,16}$",
                                   "At most 16 printable ASCII characters, no spaces.")


def new_secret() -> str:
    """32 random bytes as 64 hex digits: the size docs/collector.md recommends."""
    return secrets.token_hex(32)


def validate_secret(value: str) -> None:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValidationError("The secret must be hex digits.") from None
    # 16 bytes is the collector's floor, 128 the nginx module's ceiling.
    if not 16 <= len(raw) <= 128:
        raise ValidationError("The secret must be 16 to 128 bytes (32 to 256 hex digits).")


def parse_networks(text: str) -> list[str]:
    """The networks of a key, one per line (or separated by commas or spaces),
    in canonical form; ValidationError names the bad one."""
    out = []
    for item in text.replace(",", " ").split():
        try:
            out.append(str(ipaddress.ip_network(item, strict=True)))
        except ValueError as exc:
            raise ValidationError(f"{item!r} is not a network: {exc}") from None
    return out


def parse_sender_ids(text: str) -> list[int]:
    """The sender ids of a key, one per line (or separated by commas or
    spaces), sorted and without repeats; ValidationError names the bad one."""
    out = set()
    for item in text.replace(",", " ").split():
        if not item.isdigit() or not 0 <= int(item) <= wire.U32:
            raise ValidationError(f"{item!r} is not a sender id (an integer in 0..{wire.U32}).")
        out.add(int(item))
    return sorted(out)


def validate_sender_ids(text: str) -> None:
    if not parse_sender_ids(text):
        raise ValidationError("List at least one sender id: the collector refuses a datagram whose "
                              "sender id its key does not list.")


def validate_networks(text: str) -> None:
    if not parse_networks(text):
        raise ValidationError('List at least one network ("0.0.0.0/0 ::/0" allows any source).')


class TrafficType(models.Model):
    name = models.CharField(max_length=16, unique=True, validators=[TRAFFIC_TYPE_NAME],
                            help_text="As the agents send it and the archive keeps it, e.g. static, video, api.")
    label = models.CharField(max_length=100, blank=True, help_text="What the pages show; the name if empty.")
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.label or self.name


class SenderKey(models.Model):
    """A key the agents sign datagrams with, the source networks that may
    use it and the sender ids it may speak for."""
    key_id = models.BigIntegerField(
        "key id", unique=True, validators=[MinValueValidator(0), MaxValueValidator(wire.U32)],
        help_text="The key_id senders put in each datagram's header, 0..4294967295.")
    name = models.CharField(max_length=100, help_text="Free text for people, e.g. web-fra.")
    secret = models.CharField(max_length=256, default=new_secret, validators=[validate_secret],
                              help_text="Hex. A new key gets 32 random bytes; paste one only to import an existing key.")
    enabled = models.BooleanField(default=True, help_text="A disabled key's datagrams are refused as disabled_key.")
    networks = models.TextField(
        validators=[validate_networks],
        help_text='Source addresses allowed to use this key, one network per line. "0.0.0.0/0" and "::/0" allow any.')
    sender_ids = models.TextField(
        "sender ids", validators=[validate_sender_ids],
        help_text="The sender ids (ipr_sender_id, IPR_SENDER_ID) that may send with this key, "
                  "0..4294967295, one per line. The collector refuses any other as sender_not_allowed.")
    traffic_type = models.ForeignKey(
        TrafficType, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The traffic type the configuration snippet sets (senders may send others).")
    created = models.DateTimeField(auto_now_add=True)
    rotated = models.DateTimeField(null=True, blank=True, editable=False,
                                   help_text="When the secret was last replaced.")

    class Meta:
        ordering = ["key_id"]

    def __str__(self):
        return f"{self.key_id} {self.name}"

    def clean(self):
        # Stored canonical, one per line, as the key file lists them.
        if self.networks:
            self.networks = "\n".join(parse_networks(self.networks))
        if self.sender_ids:
            self.sender_ids = "\n".join(map(str, parse_sender_ids(self.sender_ids)))

    def save(self, *args, **kwargs):
        # A key made without sender ids (a script, a test) speaks for the
        # sender id equal to its key id, as the migration gave old keys.
        if not self.sender_ids.strip():
            self.sender_ids = str(self.key_id)
        super().save(*args, **kwargs)

    @property
    def secret_fingerprint(self) -> str:
        """Names the secret without showing it: the first 8 bytes of its SHA-256, in hex."""
        return hashlib.sha256(bytes.fromhex(self.secret)).hexdigest()[:16]

    @property
    def network_list(self) -> list[str]:
        return parse_networks(self.networks)

    @property
    def sender_id_list(self) -> list[int]:
        return parse_sender_ids(self.sender_ids)

    def key_file_entry(self) -> dict:
        """This key as an entry of the collector's key file (docs/collector.md)."""
        return {"id": self.key_id, "name": self.name, "secret": self.secret.lower(),
                "enabled": self.enabled, "networks": self.network_list,
                "sender_ids": self.sender_id_list}
