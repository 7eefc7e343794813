"""The API against its own schema: schemathesis generates requests from the
OpenAPI schema (valid and invalid parameters) and checks that no request
makes a server error and every answer matches what the schema says."""
import json

import django
import pytest
import schemathesis
from schemathesis import checks
from hypothesis import HealthCheck, settings

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core import signals  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import close_old_connections  # noqa: E402
from drf_spectacular.generators import SchemaGenerator  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from ipr.routing.models import ASName, Router  # noqa: E402

# The schema as /api/schema/ serves it (generating it needs no database).
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(SchemaGenerator().get_schema(public=True),
                                                              default=str)))
schema.app = get_wsgi_application()


@pytest.fixture
def token(db):
    Router.objects.create(name="a", asn=64500, is_default=True)
    ASName.objects.create(asn=64500, name="EXAMPLE-NET")
    # As Django's test client does: a request must not close the test's
    # database connection (it holds the test's transaction).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield Token.objects.create(user=User.objects.create_user("ops")).key
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_matches_the_schema_and_none_is_a_server_error(case, token):
    # A request the schema allows may still be refused: the schema cannot
    # say that `from` comes before `to`, that an ASN is at most 2^32 - 1, or
    # that the uplink report needs exactly one of asn and country. Every
    # other check runs: no server error, documented status codes, content
    # types and bodies that match the schema, and bad values refused.
    case.call_and_validate(headers={"Authorization": f"Token {token}"},
                           excluded_checks=[checks.positive_data_acceptance])
