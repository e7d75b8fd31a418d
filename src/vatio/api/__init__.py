"""The HTTP API: FastAPI, async, one router per resource."""

from vatio.api.app import create_app

__all__ = ["create_app"]
