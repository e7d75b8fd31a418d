"""Public response schemas (what the API promises), separate from domain types."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from vatio.model import (
    Anomaly,
    Device,
    EnergyBucket,
    EnergyPeriod,
    ModelStatus,
    ModelVersion,
    Reading,
    Resolution,
    RollupRow,
)

#: Free text a person types (a name, a note): anything but NUL, which PostgreSQL text cannot hold.
#: Without it, SQLite stored a NUL and PostgreSQL answered 500 (found by the schema fuzzer).
TEXT_PATTERN = r"^[^\x00]*$"


class ErrorBody(BaseModel):
    code: str = Field(description="machine-readable error code, e.g. not_found")
    message: str
    detail: object | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: str
    version: str
    store: str
    readings: int
    devices: int
    dead_letters: int
    pending_rollups: int


class DevicePublic(BaseModel):
    id: str
    site: str
    first_seen: datetime
    last_seen: datetime
    online: bool
    firmware: str | None
    reported_online: bool | None = Field(description="the device's own retained status, if any")

    @classmethod
    def of(cls, device: Device) -> DevicePublic:
        return cls(
            id=device.device_id,
            site=device.site_id,
            first_seen=device.first_seen,
            last_seen=device.last_seen,
            online=device.online,
            firmware=device.firmware,
            reported_online=device.status_online,
        )


class DeviceList(BaseModel):
    """A page of devices (``Page[DevicePublic]``); ``items`` kept for clients older than paging."""

    items: list[DevicePublic]
    next_cursor: str | None = None


class ReadingPublic(BaseModel):
    ts: datetime
    seq: int | None
    power_w: float | None
    energy_wh: float | None
    voltage_v: float | None
    current_a: float | None
    power_factor: float | None
    frequency_hz: float | None
    energy_export_wh: float | None

    @classmethod
    def of(cls, r: Reading) -> ReadingPublic:
        return cls(
            ts=r.ts,
            seq=r.seq,
            power_w=r.power_w,
            energy_wh=r.energy_wh,
            voltage_v=r.voltage_v,
            current_a=r.current_a,
            power_factor=r.power_factor,
            frequency_hz=r.frequency_hz,
            energy_export_wh=r.energy_export_wh,
        )


class BucketPublic(BaseModel):
    ts: datetime = Field(description="bucket start (UTC)")
    samples: int
    power_mean_w: float | None
    power_min_w: float | None
    power_max_w: float | None
    energy_wh: float

    @classmethod
    def of(cls, r: RollupRow) -> BucketPublic:
        return cls(
            ts=r.bucket,
            samples=r.samples,
            power_mean_w=r.power_mean_w,
            power_min_w=r.power_min_w,
            power_max_w=r.power_max_w,
            energy_wh=r.energy_wh,
        )


class ReadingSeries(BaseModel):
    device_id: str
    resolution: Resolution
    start: datetime
    end: datetime
    truncated: bool = Field(description="true when `limit` cut the series short")
    items: list[ReadingPublic] | list[BucketPublic]


class EnergyItem(BaseModel):
    start: datetime
    energy_wh: float

    @classmethod
    def of(cls, b: EnergyBucket) -> EnergyItem:
        return cls(start=b.start, energy_wh=b.energy_wh)


class EnergySeries(BaseModel):
    device_id: str
    bucket: EnergyPeriod
    tz: str
    start: datetime
    end: datetime
    total_wh: float
    items: list[EnergyItem]


class AnomalyPublic(BaseModel):
    """An anomaly episode: open while ``end`` is null; numbers as the detector saw them."""

    id: int
    device: str
    site: str | None = Field(description="the device's site; null if the device is unknown to the store")
    kind: str
    detector: str
    start: datetime
    last: datetime = Field(description="the latest anomalous reading of the episode")
    end: datetime | None
    score: float = Field(description="peak score of the episode (higher = more anomalous)")
    expected_w: float | None
    low_w: float | None
    high_w: float | None
    observed_w: float | None
    explanation: str
    model_version: str

    @classmethod
    def of(cls, a: Anomaly, site: str | None) -> AnomalyPublic:
        assert a.id is not None, "stored episodes have ids"
        return cls(
            id=a.id, device=a.device_id, site=site, kind=a.kind, detector=a.detector, start=a.start,
            last=a.last, end=a.end, score=a.score, expected_w=a.expected_w, low_w=a.low_w, high_w=a.high_w,
            observed_w=a.observed_w, explanation=a.explanation, model_version=a.model_version,
        )  # fmt: skip


class ModelPublic(BaseModel):
    """A trained model version; ``status`` live (in use), shadow (scored beside it) or retired."""

    id: int
    detector: str
    device: str = Field(description="device id, or `*` for a model shared by all devices")
    version: int
    status: ModelStatus
    trained_from: datetime
    trained_to: datetime
    created_at: datetime
    metrics: dict[str, float | None]

    @classmethod
    def of(cls, m: ModelVersion) -> ModelPublic:
        assert m.id is not None, "stored models have ids"
        return cls(
            id=m.id, detector=m.detector, device=m.device_id, version=m.version, status=m.status,
            trained_from=m.trained_from, trained_to=m.trained_to, created_at=m.created_at, metrics=dict(m.metrics),
        )  # fmt: skip
