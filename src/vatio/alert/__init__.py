"""Alerting: anomaly episodes become alerts (lifecycle, rules), notifications go out through an outbox.

See ``docs/alerts.md``; ``vatio alert`` runs the stage alone (:mod:`vatio.alert.service`).
"""
