"""The exception hierarchy shared by every stage.

Each boundary translates: transport errors become these domain errors, and the
API turns domain errors into HTTP responses.
"""

from __future__ import annotations


class VatioError(Exception):
    """Base class of every error Vatio raises on purpose."""


class ContractError(VatioError):
    """A message does not match wire contract v1.

    ``field`` names the offending field as a path (``readings[3].power_w``) or
    ``None`` when the message as a whole is at fault; ``reason`` says why.
    """

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)


class TopicError(ContractError):
    """A topic or an id inside it is malformed."""


class StoreError(VatioError):
    """The store could not do what was asked (connection lost, bad URL...)."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached right now; the same call may succeed later."""


class BatchRejectedError(StoreError):
    """The store refused a batch for its content; retrying it cannot help."""


class ConfigError(VatioError):
    """A setting or command-line value is invalid."""


class NotFoundError(VatioError):
    """A requested entity (device, site...) does not exist."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key!r} not found")


class ConflictError(VatioError):
    """The request conflicts with the entity's current state (e.g. an invalid transition).

    ``kind`` and ``key`` name the entity, ``state`` its current state.
    """

    def __init__(self, message: str, *, kind: str, key: str, state: str | None = None) -> None:
        self.kind = kind
        self.key = key
        self.state = state
        super().__init__(message)
