"""Bad input, generated: schemathesis against the app's own OpenAPI document (/api/schema/).

Every operation, with data that fits the schema and data that does not, without credentials
and with a valid Bearer token of a live session, through the WSGI application (in-process: no
server to start, and it finishes in seconds). Each response: no 5xx, no Python traceback, a
status the operation documents or one of the generic error answers DRF gives every endpoint
(the schema does not list 400/401/403/404/405/406/415/429 everywhere), and — for a documented
status — a body that matches the documented schema and content type.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from accounts.tests.helpers import login
from sessionhub.wsgi import application

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES_PER_OPERATION = 25
GENERIC_ERRORS = {400, 401, 403, 404, 405, 406, 413, 415, 429}
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
TRACEBACK_MARKERS = ("Traceback", 'File "/', "most recent call last")


@pytest.fixture
def token(api_client, django_user_model, password):
    django_user_model.objects.create_user(username="fuzzed", password=password)
    response = login(api_client, "fuzzed", password)
    assert response.status_code == 200
    return response.json()["access"]


def operations():
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    found = [result.ok() for result in schema.get_all_operations()]
    assert len(found) >= 8, [op.label for op in found]
    return found


def fuzz(operation, mode: GenerationMode, headers: dict, seen: dict) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        response = case.call(headers=headers)
        seen.setdefault(operation.label, set()).add(response.status_code)
        body = response.content or b""
        for marker in TRACEBACK_MARKERS:
            assert marker.encode() not in body, (case.as_curl_command(), body[:2000])
        documented = {int(code) for code in operation.definition.raw["responses"]}
        assert response.status_code in documented | GENERIC_ERRORS, (
            case.as_curl_command(),
            response.status_code,
            body[:500],
        )
        case.validate_response(response, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        # Nothing in the operation can be made invalid (no body, no constrained parameter).
        assert mode is GenerationMode.NEGATIVE and not operation.body, operation.label


@pytest.mark.parametrize("authenticated", [False, True], ids=["anonymous", "bearer"])
def test_every_operation_survives_generated_input(authenticated, token, capsys):
    headers = {"Authorization": f"Bearer {token}"} if authenticated else {}
    seen: dict[str, set[int]] = {}
    for operation in operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, headers, seen)
    with capsys.disabled():
        label = "bearer" if authenticated else "anonymous"
        print(f"\n[schemathesis, {label}] statuses per operation: {seen}")
    assert all(status < 500 for statuses in seen.values() for status in statuses)
