"""The outbox over the API (admin keys only): ``GET /api/v1/deliveries?status=``,
``POST /api/v1/deliveries/{id}/replay``, ``GET /api/v1/runs``.

Lists are newest first; ``limit`` (1 to 500, default 100) and ``before`` (an id: the page of
older ones) page through them. A dead letter's ``last_error`` is what the service answered
(``error``, and where there was one ``status``, ``answer``, ``errors``). Replaying puts a dead
delivery back in the queue, due now, its attempts reset; any other status is a 409.
"""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import abort
from marshmallow import Schema, fields, validate

from gateway.api.auth import requires, tenant_id
from gateway.api.blueprint import RATE_LIMIT_HEADERS, rate_limit_headers
from gateway.api.params import ZapierBlueprint
from gateway.relay import admin, runs
from gateway.runtime import runtime

blp = ZapierBlueprint("deliveries", __name__,
                      description="The outbox: deliveries, dead letters, replays, runs")

MAX_LIMIT = 500
MAX_ID = 2**63 - 1


class PageQuery(Schema):
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=MAX_LIMIT),
                           metadata={"description": f"1 to {MAX_LIMIT} (default 100)"})
    before = fields.Integer(validate=validate.Range(min=1, max=MAX_ID),
                            metadata={"description": "only ids below this one (the next, "
                                                     "older page)"})


class DeliveriesQuery(PageQuery):
    status = fields.String(validate=validate.OneOf(admin.STATUSES),
                           metadata={"description": "only deliveries in this status"})


class RunsQuery(PageQuery):
    route = fields.String(validate=validate.Length(min=1, max=64),
                          metadata={"description": "only runs of this route, e.g. `drain`"})


class DeliverySchema(Schema):
    id = fields.Integer(required=True)
    connector = fields.String(required=True)
    operation = fields.String(required=True)
    subject_id = fields.String(allow_none=True,
                               metadata={"description": "the customer it is about"})
    record_key = fields.String(allow_none=True,
                               metadata={"description": "the record's key at the service"})
    idempotency_key = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(admin.STATUSES))
    priority = fields.Integer(required=True, metadata={"description": "lower goes first"})
    attempt = fields.Integer(required=True)
    next_attempt_at = fields.AwareDateTime(required=True)
    lease_owner = fields.String(allow_none=True,
                                metadata={"description": "the worker that holds or sent it"})
    lease_expires_at = fields.AwareDateTime(allow_none=True)
    sent_at = fields.AwareDateTime(allow_none=True, metadata={
        "description": "when the service accepted it (kept for writes a resend would repeat)"})
    last_error = fields.Dict(allow_none=True, metadata={
        "description": "the last failure: `error`, and the service's `status`, `answer`, "
                       "`errors` where it gave them"})
    payload = fields.Dict(required=True, metadata={"description": "the record, canonical"})
    created_at = fields.AwareDateTime(required=True)
    updated_at = fields.AwareDateTime(required=True)


class RunSchema(Schema):
    id = fields.Integer(required=True)
    route = fields.String(required=True)
    started_at = fields.AwareDateTime(required=True)
    finished_at = fields.AwareDateTime(allow_none=True)
    status = fields.String(required=True)
    counts = fields.Dict(required=True, metadata={
        "description": "a drain's: `worker`, `sent`, `failed`, `dead`, and per connector"})
    error = fields.String(allow_none=True)


@blp.route("/deliveries")
class Deliveries(MethodView):
    decorators = [requires("admin")]

    @blp.key_responses("admin")
    @blp.arguments(DeliveriesQuery, location="query", as_kwargs=True)
    @blp.error_response(400, "an unknown or invalid query parameter")
    @blp.response(200, DeliverySchema(many=True), headers=RATE_LIMIT_HEADERS)
    def get(self, limit: int, status: str | None = None, before: int | None = None):
        """The tenant's deliveries, newest first (``?status=dead`` for the dead letters)."""
        with runtime().engine.connect() as conn:
            return admin.list_deliveries(conn, tenant_id(), status=status, limit=limit,
                                         before=before)


@blp.route("/deliveries/<int:delivery_id>/replay")
class Replay(MethodView):
    decorators = [requires("admin")]

    @blp.key_responses("admin")
    @blp.error_response(404, "no such delivery of this tenant (an id that is not a positive "
                             "whole number is no delivery either, answered before the key is "
                             "checked)", rate_limit_headers(required=False))
    @blp.error_response(409, "the delivery is not dead (only dead ones can be replayed)",
                        RATE_LIMIT_HEADERS)
    @blp.response(200, DeliverySchema, headers=RATE_LIMIT_HEADERS)
    def post(self, delivery_id: int):
        """Put a dead delivery back in the queue, due now, its attempts reset."""
        if not 1 <= delivery_id <= MAX_ID:
            abort(404, message=f"no delivery {delivery_id}")
        try:
            with runtime().engine.begin() as conn:
                return admin.replay(conn, tenant_id(), delivery_id)
        except admin.UnknownDelivery as exc:
            abort(404, message=str(exc))
        except admin.NotReplayable as exc:
            abort(409, message=str(exc))


@blp.route("/runs")
class Runs(MethodView):
    decorators = [requires("admin")]

    @blp.key_responses("admin")
    @blp.arguments(RunsQuery, location="query", as_kwargs=True)
    @blp.error_response(400, "an unknown or invalid query parameter")
    @blp.response(200, RunSchema(many=True), headers=RATE_LIMIT_HEADERS)
    def get(self, limit: int, route: str | None = None, before: int | None = None):
        """The tenant's runs (outbox drains, pulls, re-scores), newest first."""
        with runtime().engine.connect() as conn:
            return runs.list_runs(conn, tenant_id(), route=route, limit=limit, before=before)
