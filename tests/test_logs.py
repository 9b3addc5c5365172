"""Structured logs (gateway/logs.py): JSON lines with ts, level, logger, event and fields, plain
lines otherwise, and secrets masked by the handler's filter wherever they appear.

The process-level checks (``python app.py worker`` and ``python -m gateway.schedule`` with
``GATEWAY_LOG_JSON=1``) are in tests/relay/test_structured_logs.py."""

from __future__ import annotations

import io
import json
import logging

import pytest

from gateway import logs

SECRET = "process-secret-key-0123456789"
API_KEY = "gk_live_ab12cd_Zq9xYw8vUt7sRq6pOn5mLk4jIh3g"
HOOK_SECRET = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LWZvci10ZXN0cw=="


@pytest.fixture
def capture():
    """A logger of its own writing through the gateway's filter and formatter to a buffer;
    ``capture(json_lines)`` returns (logger, buffer)."""
    made = []

    def make(json_lines: bool):
        buffer = io.StringIO()
        handler = logging.StreamHandler(buffer)
        handler.addFilter(logs.Redactor([SECRET]))
        handler.setFormatter(logs.JsonFormatter() if json_lines else logs.PlainFormatter())
        logger = logging.getLogger(f"gateway.test_logs.{len(made)}")
        logger.propagate, logger.level = False, logging.INFO
        logger.addHandler(handler)
        made.append((logger, handler))
        return logger, buffer

    yield make
    for logger, handler in made:
        logger.removeHandler(handler)


def _lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_an_event_is_one_json_object_with_its_fields(capture):
    logger, buffer = capture(True)
    logs.event(logger, "relay.drain", "drain: 3 sent", sent=3, failed=0,
               destinations={"ten_1": {"replenit": {"sent": 3}}})
    logger.warning("plain %s line", "old-style")
    first, second = _lines(buffer)
    assert first["event"] == "relay.drain" and first["level"] == "INFO"
    assert first["logger"] == logger.name and first["message"] == "drain: 3 sent"
    assert first["sent"] == 3 and first["destinations"]["ten_1"]["replenit"]["sent"] == 3
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert second == {**second, "event": "log", "level": "WARNING",
                      "message": "plain old-style line"}


def test_a_field_never_shadows_the_lines_own_keys(capture):
    logger, buffer = capture(True)
    logs.event(logger, "x.y", "m", level=logging.WARNING, event="other", ts="then")
    (line,) = _lines(buffer)
    assert line["event"] == "x.y" and line["field_event"] == "other"
    assert line["field_ts"] == "then" and line["level"] == "WARNING"


@pytest.mark.parametrize("json_lines", [True, False])
def test_keys_and_secrets_are_masked_in_messages_fields_and_tracebacks(capture, json_lines):
    logger, buffer = capture(json_lines)
    logger.info("calling with Authorization: Bearer %s and %s", API_KEY, SECRET)
    logger.info("basic auth: Basic %s", "Z2tfbGl2ZV94eXo6")
    logs.event(logger, "hook.created", "hook", secret=HOOK_SECRET, note=f"signed {HOOK_SECRET}",
               headers={"x-replenit-auth-key": "rp-credential-1", "Accept": "json"},
               nested=[{"api_key": "k-123456"}])
    try:
        raise RuntimeError(f"refused {API_KEY} with {SECRET}")
    except RuntimeError:
        logger.exception("a send failed")
    text = buffer.getvalue()
    for secret in (API_KEY, SECRET, HOOK_SECRET, "Z2tfbGl2ZV94eXo6", "rp-credential-1",
                   "k-123456", "Zq9xYw8vUt7sRq6pOn5mLk4jIh3g"):
        assert secret not in text
    assert "gk_live_***" in text and "Bearer ***" in text and "Basic ***" in text
    assert "RuntimeError" in text and "Traceback" in text  # the traceback itself stays
    if json_lines:
        lines = _lines(buffer)
        assert lines[2]["secret"] == logs.MASK and lines[2]["headers"]["Accept"] == "json"
        assert lines[3]["exc"].startswith("Traceback")


def test_plain_lines_keep_the_old_shape_with_fields_appended(capture):
    logger, buffer = capture(False)
    logger.info("serving on %s", "http://127.0.0.1:8000")
    logs.event(logger, "relay.dead_letter", "1 dead", level=logging.WARNING, count=1,
               connector="replenit", refused_ids=[7], error=None, note="two words")
    first, second = buffer.getvalue().splitlines()
    assert first == f"INFO {logger.name}: serving on http://127.0.0.1:8000"
    assert second == (f"WARNING {logger.name}: 1 dead count=1 connector=replenit "
                      'refused_ids=[7] note="two words"')


def test_configured_secrets_come_from_the_environment():
    env = {"GATEWAY_SECRET_KEY": "new-key-1, old-key-2",
           "GATEWAY_DATABASE_URL": "postgresql+psycopg://gw:p%40ss-word@db/gw",
           "GATEWAY_REDIS_URL": "redis://:redis-pass@cache:6379/0",
           "GATEWAY_CONNECTION_KEY": "connector-credential"}
    found = logs.configured_secrets(env)
    assert set(found) == {"new-key-1", "old-key-2", "p%40ss-word", "p@ss-word", "redis-pass",
                          "connector-credential"}
    assert found == sorted(found, key=len, reverse=True)


def test_json_is_wanted_only_when_the_variable_is_on():
    assert logs.json_wanted({"GATEWAY_LOG_JSON": "1"})
    assert logs.json_wanted({"GATEWAY_LOG_JSON": "true"})
    assert not logs.json_wanted({"GATEWAY_LOG_JSON": "0"})
    assert not logs.json_wanted({})
