"""Standard Webhooks signatures: property tests (hypothesis, capped) of the verifier, the
rotation window of the stored secrets, and malformed headers and bodies through the API."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.store.db import write_transaction
from gateway.webhooks import signatures
from gateway.webhooks.secrets import load_secrets, rotate_secret
from gateway.webhooks.signatures import SignatureRefused, sign, verify
from tests.webhooks.conftest import API, body_of, inbox_count, order

SECRET = signatures.new_secret()
OTHER = signatures.new_secret()
NOW = 1_790_000_000
CAPPED = settings(max_examples=60, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])

ids = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1,
              max_size=40)
bodies = st.binary(min_size=1, max_size=200).map(
    lambda b: b.decode("latin-1").encode("utf-8"))  # any UTF-8 text


def headers(webhook_id: str, stamp: str, signature: str) -> dict[str, str]:
    return {"webhook-id": webhook_id, "webhook-timestamp": stamp,
            "webhook-signature": signature}


def signed(webhook_id: str, stamp: int, body: bytes, secret: str = SECRET) -> dict[str, str]:
    return headers(webhook_id, str(stamp), sign(secret, webhook_id, stamp, body))


def flip(text: bytes, index: int, new: int) -> bytes:
    index %= len(text)
    replacement = new if new != text[index] else (new + 1) % 256
    return text[:index] + bytes([replacement]) + text[index + 1:]


@CAPPED
@given(webhook_id=ids, body=bodies)
def test_a_valid_signature_is_accepted(webhook_id, body):
    assert verify(body, signed(webhook_id, NOW, body), [SECRET], now=NOW).webhook_id == \
        webhook_id


@CAPPED
@given(webhook_id=ids, body=bodies, part=st.sampled_from(["id", "timestamp", "body"]),
       index=st.integers(min_value=0, max_value=10_000), new=st.integers(0, 255))
def test_any_one_byte_change_is_refused(webhook_id, body, part, index, new):
    good = signed(webhook_id, NOW, body)
    if part == "body":
        body = flip(body, index, new)
    else:
        name = "webhook-id" if part == "id" else "webhook-timestamp"
        changed = flip(good[name].encode(), index, new)
        good[name] = changed.decode("latin-1")
    with pytest.raises(SignatureRefused):
        verify(body, good, [SECRET], now=NOW)


@CAPPED
@given(skew=st.integers(min_value=-299, max_value=299))
def test_timestamps_within_299_seconds_are_accepted(skew):
    body = b'{"a": 1}'
    assert verify(body, signed("msg_1", NOW + skew, body), [SECRET], now=NOW)


@CAPPED
@given(skew=st.integers(min_value=301, max_value=10**6), sign_of=st.sampled_from([-1, 1]))
def test_timestamps_301_seconds_off_or_more_are_refused(skew, sign_of):
    body = b'{"a": 1}'
    with pytest.raises(SignatureRefused) as refused:
        verify(body, signed("msg_1", NOW + sign_of * skew, body), [SECRET], now=NOW)
    assert refused.value.status == 401


def test_the_exact_edges():
    body = b"{}"
    for skew in (-299, 299, -300, 300):
        verify(body, signed("m", NOW + skew, body), [SECRET], now=NOW)
    for skew in (-301, 301):
        with pytest.raises(SignatureRefused):
            verify(body, signed("m", NOW + skew, body), [SECRET], now=NOW)


@CAPPED
@given(webhook_id=ids, body=bodies, wrong=st.lists(st.binary(min_size=32, max_size=32),
                                                     min_size=0, max_size=4),
       position=st.integers(min_value=0, max_value=4))
def test_one_valid_signature_among_several_is_accepted(webhook_id, body, wrong, position):
    import base64
    entries = ["v1," + base64.b64encode(w).decode() for w in wrong]
    entries.insert(min(position, len(entries)), sign(SECRET, webhook_id, NOW, body))
    entries.append("v2,c29tZXRoaW5nIGVsc2U=")  # another version is ignored
    assert verify(body, headers(webhook_id, str(NOW), " ".join(entries)), [SECRET], now=NOW)
    only_wrong = " ".join(["v1," + base64.b64encode(w).decode() for w in wrong] or
                          [sign(OTHER, webhook_id, NOW, body)])
    with pytest.raises(SignatureRefused):
        verify(body, headers(webhook_id, str(NOW), only_wrong), [SECRET], now=NOW)


@CAPPED
@given(webhook_id=st.text(max_size=300), stamp=st.text(max_size=20),
       signature=st.text(max_size=300), body=st.binary(max_size=100))
def test_malformed_headers_and_bodies_raise_only_signature_refused(webhook_id, stamp,
                                                                   signature, body):
    try:
        verify(body, headers(webhook_id, stamp, signature), [SECRET], now=NOW)
    except SignatureRefused as exc:
        assert exc.status in (400, 401)
    else:  # only a true signature can pass; random text cannot be one
        raise AssertionError("accepted an unsigned post")


def test_a_body_that_is_not_utf8_is_malformed():
    body = b'{"a": "\xff"}'
    good = headers("m", str(NOW), "v1," + "A" * 44)
    with pytest.raises(SignatureRefused) as refused:
        verify(body, good, [SECRET], now=NOW)
    assert refused.value.status == 400


def test_the_previous_secret_is_accepted_for_24_hours_after_a_rotation(engine, runtime,
                                                                       signed_tenant):
    rotated_at = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    with write_transaction(engine) as conn:
        new = rotate_secret(conn, runtime.vault, signed_tenant.id, now=rotated_at)
    with engine.connect() as conn:
        stored = load_secrets(conn, runtime.vault, signed_tenant.id)
    assert new.current != signed_tenant.secret and stored.previous == signed_tenant.secret
    body = b"{}"
    for moment, accepted in ((rotated_at + timedelta(hours=23, minutes=59), True),
                             (rotated_at + timedelta(hours=24, seconds=1), False)):
        stamp = int(moment.timestamp())
        old_signed = signed("m", stamp, body, signed_tenant.secret)
        assert verify(body, signed("m", stamp, body, new.current), stored.accepted(moment),
                      now=stamp)
        if accepted:
            assert verify(body, old_signed, stored.accepted(moment), now=stamp)
        else:
            with pytest.raises(SignatureRefused):
                verify(body, old_signed, stored.accepted(moment), now=stamp)


MALFORMED = st.fixed_dictionaries({}, optional={
    "webhook-id": st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=250),
    "webhook-timestamp": st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e),
                                 max_size=15),
    "webhook-signature": st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e),
                                 max_size=200),
})


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=MALFORMED, body=st.binary(max_size=60))
def test_malformed_posts_answer_4xx_with_a_json_reason(client, signed_tenant, extra, body):
    answer = client.post(f"{API}/webhooks/{signed_tenant.id}/orders", data=body,
                         headers={"content-type": "application/json", **extra})
    assert 400 <= answer.status_code < 500, answer.get_data()
    assert answer.is_json and answer.get_json()["error"]
    assert inbox_count(client.application.extensions["gateway"].engine, signed_tenant.id) == 0


def test_a_signed_post_with_bad_json_answers_400(client, signed_tenant):
    body = b'{"id": "O-1",'
    answer = client.post(f"{API}/webhooks/{signed_tenant.id}/orders", data=body,
                         headers=signed_tenant.headers(body, "msg_badjson"))
    assert answer.status_code == 400 and "JSON" in answer.get_json()["error"]


def test_a_stale_timestamp_is_refused_through_the_api(client, signed_tenant):
    import time
    body = body_of(order("O-stale"))
    for skew, status in ((-400, 401), (400, 401), (-120, 202)):
        headers_ = signed_tenant.headers(body, f"msg_stale{skew}",
                                         timestamp=int(time.time()) + skew)
        answer = client.post(f"{API}/webhooks/{signed_tenant.id}/orders", data=body,
                             headers=headers_)
        assert answer.status_code == status, answer.get_json()
