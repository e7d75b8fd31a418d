"""Simulated households and meters."""

from vatio.sim.meter import MeterParams, SimulatedMeter

__all__ = ["MeterParams", "SimulatedMeter"]
