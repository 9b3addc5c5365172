"""``POST /api/v1/webhooks/...``: posts from tills and web shops, accepted durably and fast.

- ``POST /webhooks/{tenant_id}/{topic}``: a Standard Webhooks signed post (see
  :mod:`gateway.webhooks.signatures`), checked on the raw body against the tenant's current
  secret and, for a day after a rotation, its previous one.
- ``POST /webhooks/{topic}``: the same for a sender that authenticates with the tenant's API
  key (``zapier`` or ``admin``) instead; a ``webhook-id`` header, when sent, dedupes as above.
- ``GET /webhooks/inbox``: the tenant's accepted posts (admin), ``?state=dead`` for the ones
  that could not be ingested, with their reasons.

Topics and ``?format=`` are ingest's table (any other pair is a 415 naming the accepted
formats), one record or an array. Everything that can be refused at once is refused before
anything is stored: the signature (400 malformed, 401 not matching or a timestamp more than 5
minutes off), the JSON (400), the topic/format pair (415), the fields in their wire schema
(400, naming them). Then the post is committed to the inbox (one row, in a transaction shared
with the posts arriving at the same time: :mod:`gateway.webhooks.commit`) and answered
**202** with its inbox id; it is ingested just after, by the drainer
(:mod:`gateway.webhooks.drain`). A repeated ``webhook-id`` (kept at least 7 days) stores
nothing and is answered **200** with ``duplicate: true``. Limits: per sender address (before
the signature is checked) and per tenant (after), 429 with ``Retry-After``.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone
from typing import Any

from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import abort
from limits import RateLimitItemPerMinute
from marshmallow import Schema, fields, validate
from werkzeug.routing import BaseConverter

from connectors.jsontext import loads_bounded
from gateway import ingest as core
from gateway.api.auth import requires
from gateway.api.auth import tenant_id as key_tenant
from gateway.api.blueprint import RATE_LIMIT_HEADERS
from gateway.api.json_body import _describe
from gateway.api.params import ZapierBlueprint
from gateway.runtime import Runtime, runtime
from gateway.store.types import new_id
from gateway.webhooks import drain, inbox, signatures
from gateway.webhooks.commit import CommitUnavailable, committer
from gateway.webhooks.secrets import secret_cache

blp = ZapierBlueprint("webhooks", __name__, description=(
    "Inbound webhooks: signed (Standard Webhooks) or with an API key; 202 once committed"))

#: Posts a minute per tenant (signed and keyed alike), and per sender address and tenant.
#: ``app.config["WEBHOOK_TENANT_PER_MINUTE"]`` / ``["WEBHOOK_SENDER_PER_MINUTE"]`` override.
TENANT_PER_MINUTE = 60_000
SENDER_PER_MINUTE = 30_000

NO_SECRET = ("this tenant takes no signed webhooks (no secret, or no such tenant): create one "
             "with `python app.py webhooks secret TENANT`")
_RETRY_HEADERS = {"Retry-After": {"description": "seconds to wait", "required": True,
                                  "schema": {"type": "integer", "minimum": 1}}}


class FormatQuery(Schema):
    format = fields.String(load_default=core.CANONICAL, validate=validate.Length(min=1, max=32),
                           metadata={"description": "the body's format (ingest's topic x "
                                                    "format table; another is a 415)"})


class InboxQuery(Schema):
    state = fields.String(validate=validate.OneOf(inbox.STATES))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))
    before = fields.Integer(validate=validate.Range(min=1))


class AcceptedSchema(Schema):
    inbox_id = fields.Integer(required=True)
    webhook_id = fields.String(required=True)
    topic = fields.String(required=True)
    format = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf(inbox.STATES))
    duplicate = fields.Boolean(required=True)


class InboxEntrySchema(Schema):
    id = fields.Integer(required=True)
    webhook_id = fields.String(required=True)
    topic = fields.String(required=True)
    format = fields.String(required=True)
    state = fields.String(required=True)
    attempts = fields.Integer(required=True)
    received_at = fields.DateTime(required=True)
    finished_at = fields.DateTime(allow_none=True)
    reason = fields.Raw(allow_none=True, metadata={"description": "why it is dead"})
    result = fields.Raw(allow_none=True, metadata={"description": "what it stored"})
    body = fields.String(metadata={"description": "the post as received (dead ones only)"})


class InboxListSchema(Schema):
    entries = fields.List(fields.Nested(InboxEntrySchema), required=True)


class TopicConverter(BaseConverter):
    """A path segment that is not ``inbox`` (``/webhooks/inbox`` is the listing, so a POST
    there is a 405, not a post for a topic called ``inbox``)."""

    regex = r"(?!inbox(?![^/]))[^/]+"


@blp.record_once
def _register_converter(state) -> None:  # noqa: ANN001
    state.app.url_map.converters["webhook_topic"] = TopicConverter


_BODY_DOC = {"required": True, "description": "one record or an array, in the topic's format",
             "content": {"application/json": {"schema": {"oneOf": [
                 {"type": "object"},
                 {"type": "array", "items": {"type": "object"}, "minItems": 1,
                  "maxItems": core.MAX_RECORDS}]}}}}


def _limit(rt: Runtime, config_key: str, default: int, *identifiers: str) -> None:
    per_minute = int(current_app.config.get(config_key, default))
    item = RateLimitItemPerMinute(per_minute)
    if not rt.api_limiter.hit(item, "webhooks", *identifiers):
        reset, _ = rt.api_limiter.get_window_stats(item, "webhooks", *identifiers)
        wait = max(1, math.ceil(reset - time.time()))
        abort(429, message=f"more than {per_minute} webhook posts a minute ({config_key[8:]})",
              headers={"Retry-After": str(wait)})


def _checked_payload(rt: Runtime, tenant: str, topic: str, fmt: str, raw: bytes,
                     now: datetime) -> str:
    """The body as text, after everything that can be refused at once was checked."""
    try:
        core.parser_for(topic, fmt)
    except core.UnsupportedFormat as exc:
        abort(415, message=exc.message, errors={"format": [exc.message]})
    try:
        text = raw.decode("utf-8")
        payload = loads_bounded(text)
    except ValueError as exc:
        abort(400, message=_describe(exc))
    try:
        core.parse(topic, fmt, payload, currency=rt.cached_settings(tenant).base_currency,
                   now=now)
    except core.PayloadInvalid as exc:
        abort(400, message=exc.message, errors=exc.errors)
    return text


def _accept(rt: Runtime, tenant: str, webhook_id: str, topic: str, fmt: str, text: str,
            now: datetime) -> Response:
    """Commit the post and answer it: the answer is built here, not dumped through
    ``AcceptedSchema`` (which documents it), as this is the hot path."""
    try:  # one commit shared with the posts arriving at the same time (see .commit)
        accepted = committer(rt).accept(tenant, webhook_id, topic, fmt, text, received_at=now)
    except CommitUnavailable as exc:
        abort(503, message=str(exc), headers={"Retry-After": "5"})
    if not accepted.duplicate:
        drain.wake(rt)
    answer = {"inbox_id": accepted.entry_id, "webhook_id": webhook_id, "topic": topic,
              "format": fmt, "state": accepted.state, "duplicate": accepted.duplicate}
    return current_app.response_class(json.dumps(answer, separators=(",", ":")) + "\n",
                                      status=200 if accepted.duplicate else 202,
                                      mimetype="application/json")


def _post_docs(keyed: bool):  # noqa: ANN202 - a decorator factory
    """The answers a post can give; a keyed post's 2xx carry the key's budget headers."""
    success_headers = RATE_LIMIT_HEADERS if keyed else None
    docs = [
        blp.doc(requestBody=_BODY_DOC),
        blp.response(202, AcceptedSchema, headers=success_headers,
                     description="committed to the inbox; ingested just after"),
        blp.alt_response(200, schema=AcceptedSchema, success=True, headers=success_headers,
                         description="a repeated webhook-id: nothing was stored again"),
        blp.error_response(400, "a malformed signature header, a body that is not JSON, or "
                                "fields that fail the format's schema"),
        blp.error_response(413, "the body is larger than GATEWAY_MAX_BODY_BYTES"),
        blp.error_response(415, "a topic or format not in ingest's table (names the accepted "
                                "formats), or a body not sent as JSON"),
        blp.error_response(503, "the post's commit did not finish in time: it was not "
                                "stored, or (the message says which) it may still land, and "
                                "a retry is then answered as a duplicate", _RETRY_HEADERS),
    ]
    if not keyed:  # a keyed post's 429 is documented with its key's (key_responses)
        docs.append(blp.error_response(429, "over the sender's or the tenant's posts a minute",
                                       _RETRY_HEADERS))
        docs.append(blp.doc(security=[]))

    def apply(func):  # noqa: ANN001, ANN202
        for decorator in reversed(docs):
            func = decorator(func)
        return func

    return apply


def _lower_headers() -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


@blp.route("/webhooks/<tenant_id>/<topic>")
class SignedWebhook(MethodView):
    raw_body = True  # the signature is checked on the bytes, then they are parsed once

    @_post_docs(keyed=False)
    @blp.error_response(401, "no signature matches, the timestamp is more than 5 minutes "
                             "off, or the tenant takes no signed webhooks")
    @blp.arguments(FormatQuery, location="query")
    def post(self, query, tenant_id: str, topic: str):
        """Accept a signed post (Standard Webhooks) for the tenant in the path."""
        rt = runtime()
        _limit(rt, "WEBHOOK_SENDER_PER_MINUTE", SENDER_PER_MINUTE, tenant_id,
               request.remote_addr or "unknown")
        secrets = secret_cache(rt).get(rt.engine, rt.vault, tenant_id)
        if secrets is None:
            abort(401, message=NO_SECRET)
        moment = time.time()
        now = datetime.fromtimestamp(moment, timezone.utc)
        raw = request.get_data(cache=True)
        try:
            signed = signatures.verify(raw, _lower_headers(), secrets.accepted(now), now=moment)
        except signatures.SignatureRefused as exc:
            abort(exc.status, message=exc.message)
        _limit(rt, "WEBHOOK_TENANT_PER_MINUTE", TENANT_PER_MINUTE, tenant_id)
        text = _checked_payload(rt, tenant_id, topic, query["format"], raw, now)
        return _accept(rt, tenant_id, signed.webhook_id, topic, query["format"], text, now)


@blp.route("/webhooks/<webhook_topic:topic>")
class KeyedWebhook(MethodView):
    decorators = [requires("zapier")]
    raw_body = True

    @_post_docs(keyed=True)
    @blp.key_responses("zapier")
    @blp.doc(parameters=[{"in": "header", "name": "webhook-id", "required": False,
                          "schema": {"type": "string", "maxLength": 200},
                          "description": "dedupes redeliveries for at least 7 days"}])
    @blp.arguments(FormatQuery, location="query")
    def post(self, query, topic: str):
        """Accept a post from a sender that authenticates with the tenant's API key."""
        rt, tenant = runtime(), key_tenant()
        webhook_id = request.headers.get("webhook-id")
        if webhook_id is None:
            webhook_id = new_id("wh")
        elif not signatures._ID.fullmatch(webhook_id):
            abort(400, message="webhook-id must be 1 to 200 visible ASCII characters")
        _limit(rt, "WEBHOOK_TENANT_PER_MINUTE", TENANT_PER_MINUTE, tenant)
        now = datetime.now(timezone.utc)
        text = _checked_payload(rt, tenant, topic, query["format"],
                                request.get_data(cache=True), now)
        return _accept(rt, tenant, webhook_id, topic, query["format"], text, now)


@blp.route("/webhooks/inbox")
class Inbox(MethodView):
    decorators = [requires("admin")]

    @blp.key_responses("admin")
    @blp.arguments(InboxQuery, location="query")
    @blp.response(200, InboxListSchema, headers=RATE_LIMIT_HEADERS)
    @blp.error_response(400, "a query parameter is not valid")
    def get(self, query):
        """The tenant's accepted posts, newest first (``state=dead``: the dead letters)."""
        with runtime().engine.connect() as conn:
            entries = inbox.list_entries(conn, key_tenant(), state=query.get("state"),
                                         limit=query["limit"], before=query.get("before"))
        return {"entries": [_entry_answer(e) for e in entries]}


def _entry_answer(entry: inbox.InboxEntry) -> dict[str, Any]:
    answer = {"id": entry.id, "webhook_id": entry.webhook_id, "topic": entry.topic,
              "format": entry.format, "state": entry.state, "attempts": entry.attempts,
              "received_at": entry.received_at, "finished_at": entry.finished_at,
              "reason": _reason(entry.reason), "result": entry.result}
    if entry.state == "dead":
        answer["body"] = entry.body
    return answer


def _reason(reason: str | None) -> Any:
    if reason is None:
        return None
    try:
        return loads_bounded(reason)
    except ValueError:
        return reason
