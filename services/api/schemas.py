"""What the API returns. Output models are separate from tables, so no column leaks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from fastapi import Response
from pydantic import BaseModel, Field


class Problem(BaseModel):
    """An error answer: ``detail`` says what is wrong."""

    detail: str


FieldErrors = list[dict[str, Any]]  # FastAPI's own 422: one {loc, msg, type, …} per field


class InvalidRequest(BaseModel):
    detail: str | FieldErrors = Field(
        description="A sentence (e.g. a time range that is too long), or one entry per field"
    )


class Health(BaseModel):
    status: str
    database: str


class Location(BaseModel):
    t: datetime = Field(description="Device time of the fix (UTC)")
    lat: float
    lon: float
    acc: float = Field(description="Accuracy radius in metres")
    coarse: bool = Field(
        default=False,
        description="Snapped to a ~500 m cell: a caregiver without an open alert sees no more",
    )
    src: str = Field(description="gps, wifi or cell")
    spd: float | None = None
    hdg: float | None = None


class DeviceSummary(BaseModel):
    device_id: str
    wearer_id: str
    wearer_name: str
    online: bool = Field(description="Connected and heard from within ANXIN_OFFLINE_AFTER_S")
    battery: int | None
    last_seen: datetime | None
    last_fix_t: datetime | None


class DevicePage(BaseModel):
    devices: list[DeviceSummary]
    next_after: str | None = Field(description="Pass as ?after= for the next page")


class LatestLocation(BaseModel):
    wearer_id: str
    device_id: str | None
    location: Location | None = Field(description="Null until the watch has sent a fix")
    age_s: float | None = Field(description="Seconds since the fix's device time")
    online: bool
    battery: int | None
    last_seen: datetime | None


class TrackPoint(Location):
    n: int = Field(default=1, description="Fixes in this bucket (1 without bucketing)")


class History(BaseModel):
    wearer_id: str
    start: datetime
    end: datetime
    bucket_s: int | None = Field(description="Bucket width; each point is its most accurate fix")
    points: list[TrackPoint]
    truncated: bool = Field(description="More points exist than `limit`; narrow the range")


class InvalidFence(BaseModel):
    detail: dict[str, list[str]] | FieldErrors = Field(
        description='{"problems": [one line per problem, naming the feature and the place]};'
        " a request that is not even a JSON object gets FastAPI's list of field errors"
    )


# Answers every route may give, for its OpenAPI description (schemathesis checks them).
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or wrong bearer token"}
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such wearer (or fence)"}
}
MALFORMED_BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body could not be read as JSON"}
}
BAD_PARAMETERS: dict[int | str, dict[str, Any]] = {
    422: {"model": InvalidRequest, "description": "A parameter is invalid"}
}
FORBIDDEN: dict[int | str, dict[str, Any]] = {
    403: {"model": Problem, "description": "Your relation to the wearer does not allow this"}
}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": Problem, "description": "The database is unavailable: retry after a moment"}
}
# What every route of a router may answer besides its own success.
COMMON: dict[int | str, dict[str, Any]] = {
    **UNAUTHORIZED, **FORBIDDEN, **NOT_FOUND, **MALFORMED_BODY, **BAD_PARAMETERS,
}  # fmt: skip


class FenceMembership(BaseModel):
    fence_id: str
    name: str
    kind: str = Field(description="safe or nogo")
    inside: bool | None = Field(description="Null until a fix has decided it")
    since: datetime | None
    pending_exit_since: datetime | None = Field(
        description="Seen outside since then; the exit counts once the dwell time has passed"
    )
    active: bool = Field(description="False while the fence's schedule is off")


class WearerEvent(BaseModel):
    event_id: int
    device_id: str
    kind: str = Field(description="fence_enter, fence_exit, alarm_sos, alarm_fall or alarm_removed")
    fence_id: str | None
    fence_name: str | None
    t: datetime = Field(description="Device time of the fix or alarm")
    lat: float | None
    lon: float | None
    acc: float | None
    coarse: bool = False
    distance_m: float | None = Field(description="Signed distance to the boundary: > 0 inside")
    detail: dict[str, Any] = Field(description="For alarms: mode (audible/silent), fix_error")
    created_at: datetime


def raw_json(body: dict[str, Any]) -> Response:
    """The answer of a route too big to pay a model per item for: plain values written by
    orjson (times in UTC as ``...Z``, as pydantic writes them). The route's ``response_model``
    still describes it; tests/integration/test_api.py checks the two agree."""
    return Response(orjson.dumps(body, option=orjson.OPT_UTC_Z), media_type="application/json")


def as_json(model: BaseModel) -> Response:
    """The answer of a hot route, written by pydantic-core at once. Returned as a model,
    FastAPI would dump it to Python objects and validate those again against the route's
    ``response_model`` (which stays, for the OpenAPI description)."""
    return Response(model.model_dump_json(), media_type="application/json")
