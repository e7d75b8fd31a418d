"""The edge gateway: device adapters, store-and-forward and the CoAP/HTTP southbound receivers.

Only the southbound receivers exist so far (:mod:`vatio.edge.southbound`).
"""
