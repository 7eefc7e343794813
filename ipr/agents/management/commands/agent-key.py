"""``ipr agent-key --id N``: what a web server sends with sender key N, on
stdout and nothing else there, so that key rotation can be a script."""
from django.core.management.base import BaseCommand, CommandError

from ipr.agents import keyfile
from ipr.agents.models import SenderKey
from ipr_agent import wire


def u32(text: str) -> int:
    value = int(text)
    if not 0 <= value <= wire.U32:
        raise ValueError(text)
    return value


class Command(BaseCommand):
    help = ("Print what a web server needs to send with a sender key: the nginx module's key file "
            "(--format nginx, the default) or the WSGI agent's environment (--format env).")
    requires_system_checks = []  # a script's step: no check output, no delay

    def add_arguments(self, parser):
        parser.add_argument("--id", type=u32, required=True, dest="key_id", metavar="N",
                            help="the key id, as the admin lists it")
        parser.add_argument("--format", choices=["nginx", "env"], default="nginx",
                            help="nginx: the ipr_key_file line KEY_ID:SECRET_HEX; "
                                 "env: IPR_COLLECTOR, IPR_KEY_ID, IPR_KEY_SECRET, IPR_SENDER_ID "
                                 "and IPR_TRAFFIC_TYPE lines")
        parser.add_argument("--sender-id", type=u32, metavar="N",
                            help="IPR_SENDER_ID for --format env, one of the key's sender ids "
                                 "(default: its lowest)")

    def handle(self, key_id, format, sender_id=None, **options):
        if sender_id is not None and format != "env":
            raise CommandError("--sender-id goes with --format env (nginx.conf sets ipr_sender_id)")
        try:
            key = SenderKey.objects.get(key_id=key_id)
        except SenderKey.DoesNotExist:
            raise CommandError(f"no sender key {key_id}") from None
        if not key.enabled:
            raise CommandError(f"sender key {key_id} ({key.name}) is disabled: the collector refuses it")
        if format == "nginx":
            text = keyfile.nginx_key_file(key)
        else:
            try:
                text = keyfile.wsgi_environment(key, sender_id=sender_id)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        self.stdout.write(text, ending="")
