"""Ingest: consume telemetry from the broker, validate, batch, write, then acknowledge."""
