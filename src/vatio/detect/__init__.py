"""Detection: detectors score, thresholds decide, explanations say why."""

from vatio.detect.base import DeviceSeries, SeriesDetector, SeriesScores, Threshold

__all__ = ["DeviceSeries", "SeriesDetector", "SeriesScores", "Threshold"]
