"""Load the AS names data sources now."""
from ipr.routing.management.commands.load_countries import Command as LoadCountries


class Command(LoadCountries):
    help = ("Reload every enabled AS names source, or add one and load it: --file PATH (an 'ASN NAME, "
            "CC' list or a PeeringDB JSON export; kept only if this first load succeeds). Exit status 1 "
            "when a source was refused.")
    kinds = ["asnames"]
