"""Property-based fuzzing of the whole REST API from its own OpenAPI document (schemathesis).

A real Daphne serves the API; every operation gets generated requests with a valid write key.
Every answer must be declared in the schema and match it, and none may be a 5xx.
"""

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from profiles.models import AvatarProfile
from sessions_app.models import ApiKey
from tests import factories

# Generous limits: throttling is tested elsewhere, here it would only hide the other answers.
SERVER_ENV = {"API_THROTTLE_PER_MINUTE": "1000000", "MINT_RATE_PER_MINUTE": "1000000"}


@pytest.fixture
def api_server(make_daphne_server):
    server = make_daphne_server(env=SERVER_ENV)
    key = factories.api_key(*ApiKey.SCOPES, name="fuzz")
    headers = {"Authorization": f"Bearer {key}"}
    # One real session (minted through the emulator, with events) so that half the cases find it.
    session = httpx.post(f"{server.url}/api/v1/sessions", headers=headers, json={}).json()
    httpx.post(
        f"{server.url}/api/v1/sessions/{session['session_id']}/events",
        headers=headers,
        json={
            "events": [{"seq": 1, "ts": 1764081234567, "source": "client", "event": {"event_type": "client.started"}}]
        },
    )
    server.headers, server.session_id = headers, session["session_id"]
    # And a real profile besides the default one, for the cases with a {slug}.
    AvatarProfile.objects.create(slug="fuzzed", name="Fuzzed", avatar_id=AvatarProfile.objects.default().avatar_id)
    return server


def cases(operation, session_id):
    """Valid requests, valid requests for the real session or profile, and invalid requests (which must get a 4xx)."""
    kinds = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
    if "{session_id}" in operation.path:
        kinds.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters={"session_id": session_id}))
    if "{slug}" in operation.path:
        for slug in ("fuzzed", "default"):
            kinds.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters={"slug": slug}))
    return st.one_of(kinds)


def test_the_api_keeps_its_schema(api_server):
    # One server for every operation (schemathesis.pytest.from_fixture does not run under pytest 9).
    schema = schemathesis.openapi.from_url(f"{api_server.url}/api/v1/openapi.json")
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=cases(operation, api_server.session_id))
        @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def keeps_its_schema(case):
            case.call_and_validate(base_url=api_server.url, headers=api_server.headers)

        keeps_its_schema()
