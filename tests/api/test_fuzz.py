"""Schemathesis against the OpenAPI schema: generated requests to every operation, bounded,
must never get a 5xx (a 500 always means a bug)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.factories import make_bet, make_customer, make_shop, scan_bytes


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_no_operation_answers_5xx(app, client, session):
    shop = make_shop(session)
    customer = make_customer(session)
    bet = make_bet(session, shop_id=shop.id, customer_id=customer.id)
    assert client.post(f"/bets/{bet.id}/slip", files={"slip": ("s.png", scan_bytes())}).is_success
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def call(case):  # type: ignore[no-untyped-def]
            response = case.call(headers={"X-API-Key": client.headers["X-API-Key"]})
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                f"{response.text[:200]}")  # fmt: skip

        call()
    assert operations >= 15
    assert failures == [], "\n".join(failures[:20])
