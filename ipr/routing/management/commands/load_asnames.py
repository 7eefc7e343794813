"""Load the AS names data sources now."""
from ipr.routing.management.commands.load_countries import Command as LoadCountries


class Command(LoadCountries):
    help = ("Reload every AS names source, or add one: --file PATH (an 'ASN NAME, CC' list "
            "or a PeeringDB JSON export).")
    kinds = ["asnames"]
