"""Public response schemas (what the API promises), separate from domain types."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from vatio.model import Device, EnergyBucket, EnergyPeriod, Reading, Resolution, RollupRow


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
    items: list[DevicePublic]


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
    truncated: bool = Field(description="true when `limit` cut the raw series short")
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
