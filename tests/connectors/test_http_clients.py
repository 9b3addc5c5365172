"""The HTTP core's guarantees as the four connector clients keep them, against their sandboxes
over real HTTP on 127.0.0.1: a caller's deadline reaches every client, and a broken connection
setting or address fails the connection (``Decision.FAIL``) instead of dead-lettering records.

Every sandbox here gets a credential of its own: budgets of one credential share their pauses
in the process, and these clients run on fake clocks.
"""

from __future__ import annotations

import uuid

import pytest

from connectors import base
from connectors.base import ConnectionConfig
from connectors.http import (
    AddressNotFound,
    ConfigurationError,
    DeadlineExceeded,
    Decision,
    NotFound,
    RateLimited,
    RetryPolicy,
    decide,
)
from tests.connectors.conftest import kit_root, sandbox_log, set_faults
from tests.connectors.test_http_core import FakeClock

PATIENT = RetryPolicy(max_attempts=5, backoff_base=0.01, backoff_cap=0.02, max_elapsed=1e6)


def _own_sandbox(case, start_case_sandbox):
    """The case's sandbox with a credential no other test uses; (sandbox, key)."""
    key = f"key-{uuid.uuid4().hex}"
    return start_case_sandbox(case, api_key=key), key


def test_a_deadline_scope_reaches_every_client(case, start_case_sandbox, closing):
    sandbox, key = _own_sandbox(case, start_case_sandbox)
    clock = FakeClock()
    client = closing(case.make_client(sandbox.url, api_key=key, clock=clock, sleep=clock.sleep,
                                      retry=PATIENT))
    set_faults(sandbox.url, burst_429=1, retry_after=3600)
    with client.deadline(clock() + 30), pytest.raises(DeadlineExceeded) as caught:
        case.one_request(client)
    assert decide(caught.value) is Decision.RETRY
    assert isinstance(caught.value.__cause__, RateLimited)
    assert clock.sleeps == []  # it did not wait out the hour
    assert len(sandbox_log(sandbox.url)["timestamps"]) == 1


def test_a_clients_default_deadline_bounds_each_call(case, start_case_sandbox, closing):
    sandbox, key = _own_sandbox(case, start_case_sandbox)
    clock = FakeClock()
    client = closing(case.make_client(sandbox.url, api_key=key, clock=clock, sleep=clock.sleep,
                                      retry=PATIENT, deadline_seconds=30))
    set_faults(sandbox.url, burst_429=1, retry_after=3600)
    with pytest.raises(DeadlineExceeded):
        case.one_request(client)
    assert clock.sleeps == []
    # The 429 paused the credential for an hour: a call with no room for that sends nothing.
    with pytest.raises(DeadlineExceeded):
        case.one_request(client)
    assert len(sandbox_log(sandbox.url)["timestamps"]) == 1


# --------------------------------------------------------- connection settings fail the connection


@pytest.mark.parametrize("name", base.BUILTIN)
def test_a_missing_credential_is_a_configuration_error(name):
    spec = base.get(name)
    config = ConnectionConfig("http://127.0.0.1:9/api", {},
                              {"site_id": "s1", "tenant_id": "t1", "currency": "USD"})
    with pytest.raises(ConfigurationError) as caught:
        spec.make_client(config)
    assert decide(caught.value) is Decision.FAIL
    assert isinstance(caught.value, ValueError)  # what a bad argument always raised


@pytest.mark.parametrize("name", ["rekindle", "rejoiner"])
def test_a_bad_currency_setting_is_a_configuration_error(name):
    spec = base.get(name)
    config = ConnectionConfig("http://127.0.0.1:9/api", {"api_key": "k"},
                              {"site_id": "s1", "currency": "NOPE"})
    with pytest.raises(ConfigurationError, match="currency") as caught:
        spec.make_client(config)
    assert decide(caught.value) is Decision.FAIL


def test_a_replenit_tenant_that_cannot_be_a_path_segment_is_a_configuration_error():
    config = ConnectionConfig("http://127.0.0.1:9/api", {"api_key": "k"}, {"tenant_id": "a/b"})
    with pytest.raises(ConfigurationError, match="tenant_id"):
        base.get("replenit").make_client(config)


def test_a_wrong_replenit_tenant_fails_the_connection_not_the_records(start_case_sandbox,
                                                                       closing):
    from tests.connectors.cases.replenit import CASE, CONTEXT, customer

    sandbox, key = _own_sandbox(CASE, start_case_sandbox)
    right = CASE.make_client(sandbox.url, api_key=key)
    config = ConnectionConfig(right.base_url, {"api_key": key},
                              {"tenant_id": "00000000-0000-4000-8000-000000000000"})
    right.close()
    wrong = closing(base.get("replenit").make_client(config, retry=PATIENT))
    upsert = base.get("replenit").operations["customers.upsert"]
    with pytest.raises(AddressNotFound) as caught:
        upsert.send(wrong, [customer(1), customer(2)], CONTEXT)
    assert decide(caught.value) is Decision.FAIL and caught.value.status == 404
    with pytest.raises(AddressNotFound):
        wrong.delete_order("O-1")
    assert not wrong.check().ok  # check() still tells an unknown tenant apart


def test_a_wrong_rekindle_base_path_fails_the_connection(start_case_sandbox, closing):
    from tests.connectors.cases.rekindle import CASE, customer

    sandbox, key = _own_sandbox(CASE, start_case_sandbox)
    good = closing(CASE.make_client(sandbox.url, api_key=key, retry=PATIENT))
    assert good.find_customer("nobody@example.com") is None  # Rekindle's own "not found"
    config = ConnectionConfig(f"{kit_root(sandbox.url)}/api/zapeir", {"api_key": key})
    wrong = closing(base.get("rekindle").make_client(config, retry=PATIENT))
    upsert = base.get("rekindle").operations["customers.upsert"]
    with pytest.raises(AddressNotFound) as caught:
        upsert.send(wrong, [customer(1)], {"currency": "USD"})
    assert decide(caught.value) is Decision.FAIL
    with pytest.raises(NotFound) as lookup:
        wrong.find_customer("jane@example.com")
    assert decide(lookup.value) is Decision.FAIL
