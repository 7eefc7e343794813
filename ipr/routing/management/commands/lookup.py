"""Print what an address resolves to, per router."""
import json

from django.core.management.base import BaseCommand, CommandError

from ipr.fields import format_asn
from ipr.routing.lookup import address_bytes, resolver
from ipr.routing.models import ASName


class Command(BaseCommand):
    help = "Per router: the matching prefix, AS path, origin AS and country of an address."

    def add_arguments(self, parser):
        parser.add_argument("address")
        parser.add_argument("--json", dest="as_json", action="store_true", help="machine-readable output")

    def handle(self, address, as_json=False, **options):
        try:
            address_bytes(address)
        except ValueError:
            raise CommandError(f"{address!r} is not an IP address") from None
        rows = resolver().explain(address)
        if as_json:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not rows:
            raise CommandError("no router has an active table: load one with load_routes")
        names = dict(ASName.objects.filter(asn__in=[r["origin_as"] for r in rows if r["origin_as"]]
                                           + [r["neighbor_as"] for r in rows if r["neighbor_as"]])
                     .values_list("asn", "name"))

        def asn(n):
            return f"{format_asn(n)} {names.get(n, '')}".rstrip() if n is not None else "-"

        for r in rows:
            mark = "  (carries this server's traffic)" if r["carries_as_server"] else ""
            self.stdout.write(f"{r['router']} ({format_asn(r['router_asn'])}), table #{r['table']}{mark}")
            if r.get("special_purpose"):
                self.stdout.write(f"  prefix      {r['prefix']} ({r['special_purpose']}: a special-purpose "
                                  "address, no AS's and no country's)")
            elif r["prefix"] is None:
                self.stdout.write("  no route")
            else:
                self.stdout.write(f"  prefix      {r['prefix']}")
                self.stdout.write(f"  as path     {r['as_path'] or '(local)'}")
                override = "  (override)" if r["origin_override"] is not None else ""
                self.stdout.write(f"  origin      {asn(r['origin_as'])}{override}")
                self.stdout.write(f"  neighbour   {asn(r['neighbor_as'])}")
                self.stdout.write(f"  next hop    {r['next_hop'] or '-'}")
                if r["local_pref"] is not None:
                    self.stdout.write(f"  local pref  {r['local_pref']}")
                if r["communities"]:
                    self.stdout.write(f"  communities {r['communities']}")
            self.stdout.write(f"  country     {r['country'] or '-'}")

