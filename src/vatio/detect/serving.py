"""What `vatio detect` needs to serve the back-end tier: model versions, shadows, sensitivity.

:class:`ModelBook` mirrors the live and shadow versions of the ``seasonal``
detector in the store and says which devices changed since the last look, so
a promotion (``vatio models promote``, the API) takes effect at the next
refresh without a restart. :class:`ShadowRun` is a candidate version scored
beside the live one: it counts the readings it would have flagged and how
often it agrees with the live version, and never alerts. :class:`Sensitivity`
holds per-device threshold multipliers and mutes.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vatio.detect.backend import SeasonalDetector
from vatio.detect.seasonal_model import SeasonalModel
from vatio.errors import ConfigError
from vatio.model import ModelStatus, ModelVersion
from vatio.store import Store

log = logging.getLogger(__name__)

SEASONAL = "seasonal"


@dataclass(frozen=True, slots=True)
class Sensitivity:
    """Per-device threshold multipliers (> 1: fewer anomalies) and muted devices.

    A TOML file gives them per device; a muted device is still scored and
    learned (its baselines stay current) but no anomaly is recorded for it::

        default = 1.0
        [devices.plug-7]
        sensitivity = 2.0
        [devices.fridge-1]
        muted = true

    >>> s = Sensitivity.parse('[devices.plug-7]\\nsensitivity = 2.0\\nmuted = true')
    >>> s.multiplier("plug-7"), s.multiplier("other"), s.is_muted("plug-7")
    (2.0, 1.0, True)
    """

    default: float = 1.0
    multipliers: Mapping[str, float] = field(default_factory=dict)
    muted: frozenset[str] = frozenset()

    def multiplier(self, device_id: str) -> float:
        return self.multipliers.get(device_id, self.default)

    def is_muted(self, device_id: str) -> bool:
        return device_id in self.muted

    def with_muted(self, devices: tuple[str, ...]) -> Sensitivity:
        return Sensitivity(self.default, self.multipliers, self.muted | frozenset(devices))

    @classmethod
    def parse(cls, text: str) -> Sensitivity:
        """Raises :class:`~vatio.errors.ConfigError` for invalid TOML or values."""
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"sensitivity file: {exc}") from exc
        default = _multiplier(doc.get("default", 1.0), "default")
        devices = doc.get("devices", {})
        if not isinstance(devices, dict) or not all(isinstance(v, dict) for v in devices.values()):
            raise ConfigError("sensitivity file: [devices.ID] tables expected")
        multipliers = {d: _multiplier(v["sensitivity"], d) for d, v in devices.items() if "sensitivity" in v}
        muted = frozenset(d for d, v in devices.items() if _flag(v.get("muted", False), d))
        return cls(default, multipliers, muted)

    @classmethod
    def load(cls, path: Path) -> Sensitivity:
        try:
            return cls.parse(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read sensitivity file {path}: {exc}") from exc


def _multiplier(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e6:
        raise ConfigError(f"sensitivity of {where} must be a number > 0, got {value!r}")
    return float(value)


def _flag(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"muted of {where} must be true or false, got {value!r}")
    return value


@dataclass(slots=True)
class ShadowRun:
    """A shadow version scored beside the live one; it only counts."""

    version: ModelVersion
    detector: SeasonalDetector
    readings: int = 0
    would_flag: int = 0
    agree: int = 0

    def tally(self, flagged: npt.NDArray[np.bool_], live_flagged: npt.NDArray[np.bool_] | None) -> None:
        self.readings += len(flagged)
        self.would_flag += int(np.count_nonzero(flagged))
        live = np.zeros(len(flagged), dtype=np.bool_) if live_flagged is None else live_flagged
        self.agree += int(np.count_nonzero(flagged == live))

    def report(self) -> dict[str, object]:
        return {
            "model": self.version.id, "device": self.version.device_id, "version": self.version.version,
            "readings": self.readings, "would_flag": self.would_flag,
            "agreement": round(self.agree / self.readings, 4) if self.readings else None,
        }  # fmt: skip


def detector_for(version: ModelVersion) -> SeasonalDetector | None:
    """A fresh detector of a stored version; None (logged) when its parameters do not decode."""
    try:
        return SeasonalDetector(model=SeasonalModel.from_bytes(version.params))
    except ValueError as exc:
        log.warning("model %s of %s cannot be served: %s", version.id, version.device_id, exc)
        return None


@dataclass(slots=True)
class ModelBook:
    """The live and shadow versions per device, as last read from the store."""

    detector: str = SEASONAL
    live: dict[str, ModelVersion] = field(default_factory=dict)
    shadow: dict[str, dict[int, ModelVersion]] = field(default_factory=dict)

    async def refresh(self, store: Store) -> set[str]:
        """Re-read the versions; returns the devices whose live or shadow versions changed."""
        live: dict[str, ModelVersion] = {}
        shadow: dict[str, dict[int, ModelVersion]] = {}
        for m in await store.models(detector=self.detector):  # newest first
            if m.id is None:
                continue
            if m.status is ModelStatus.LIVE:
                live.setdefault(m.device_id, m)
            elif m.status is ModelStatus.SHADOW:
                shadow.setdefault(m.device_id, {})[m.id] = m
        devices = set(live) | set(self.live) | set(shadow) | set(self.shadow)
        changed = {
            d for d in devices
            if _id(live.get(d)) != _id(self.live.get(d)) or set(shadow.get(d, {})) != set(self.shadow.get(d, {}))
        }  # fmt: skip
        self.live, self.shadow = live, shadow
        return changed


def _id(version: ModelVersion | None) -> int | None:
    return None if version is None else version.id
