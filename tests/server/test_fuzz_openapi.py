"""Schemathesis against the OpenAPI document of a real ``tailorkit serve`` on loopback.

Every documented operation is called with generated (valid and invalid)
requests, once with the ingest key and once with the admin key. Checks: no
5xx, the status code and content type are documented, and the body matches
the documented schema for that status. The CI run is small
(``TAILORKIT_FUZZ_EXAMPLES``, default 6 per operation and key); set it to a
few hundred for a long run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tailorkit.demo.definitions import write_definitions
from tailorkit.project.init import write_project
from tests.conftest import LiveServer, start_server

EXAMPLES = int(os.environ.get("TAILORKIT_FUZZ_EXAMPLES", "6"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server for a project with the demo's segments, flags, experiments and placements."""
    root = write_project(tmp_path_factory.mktemp("fuzz") / "shop")
    write_definitions(root, datetime.now(UTC))
    server = start_server(root, Path(root) / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_server: LiveServer) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


def _cases(operation: APIOperation) -> st.SearchStrategy[schemathesis.Case]:
    """Valid requests, and invalid ones where the schema can be violated."""
    positive = operation.as_strategy(GenerationMode.POSITIVE)
    try:
        return positive | operation.as_strategy(GenerationMode.NEGATIVE)
    except Exception:  # nothing in the schema to violate (no parameters, no body)
        return positive


def _fuzz(api_schema: schemathesis.BaseSchema, headers: dict[str, str]) -> None:
    """Run every operation; collect the failures of all of them, then report them together."""
    failures: list[str] = []
    results = list(api_schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results) >= 30, "every operation is documented and fuzzed"

    for operation in operations:

        @given(case=_cases(operation))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,  # the same cases on every CI run
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: schemathesis.Case) -> None:
            if case.operation.path == "/v1/admin/segments":
                # the warehouse report costs seconds per call (tests/segment cover it)
                case.query = {**(case.query or {}), "batch": "false"}
            case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # the first failure of each operation
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_every_operation_with_the_ingest_key(
    api_schema: schemathesis.BaseSchema, fuzz_server: LiveServer
) -> None:
    _fuzz(api_schema, fuzz_server.ingest_headers)


def test_every_operation_with_the_admin_key(
    api_schema: schemathesis.BaseSchema, fuzz_server: LiveServer
) -> None:
    _fuzz(api_schema, fuzz_server.admin_headers)
