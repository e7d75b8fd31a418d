"""Vatio: residential electricity monitoring and anomaly detection."""

__version__ = "0.1.0"
