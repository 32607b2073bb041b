"""What the API returns. Output models are separate from tables, so no column leaks."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: str
    database: str


class Location(BaseModel):
    t: datetime = Field(description="Device time of the fix (UTC)")
    lat: float
    lon: float
    acc: float = Field(description="Accuracy radius in metres")
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
