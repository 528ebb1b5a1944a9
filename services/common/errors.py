"""Error hierarchy shared by all services.

    CsmsError
    ├── ConfigError            bad settings; the process must not start
    ├── BusError
    │   ├── BusUnavailable     retriable: the broker did not accept the record (yet)
    │   └── RecordTooLarge     not retriable: this record can never be accepted (size)
    ├── StoreError
    │   ├── StoreUnavailable   retriable: the database did not answer
    │   └── ConflictError      an optimistic/LWT condition failed
    └── NotFound
"""

from __future__ import annotations

__all__ = ["CsmsError", "ConfigError", "BusError", "BusUnavailable", "RecordTooLarge", "StoreError", "StoreUnavailable", "ConflictError", "NotFound"]


class CsmsError(Exception):
    retriable = False


class ConfigError(CsmsError):
    pass


class BusError(CsmsError):
    pass


class BusUnavailable(BusError):
    retriable = True


class RecordTooLarge(BusError):
    """The broker (or our own limit) refuses this record for its size. Retrying cannot
    help, and it says nothing about the bus's health: never a reason to report not-ready."""

    retriable = False


class StoreError(CsmsError):
    pass


class StoreUnavailable(StoreError):
    retriable = True


class ConflictError(StoreError):
    pass


class NotFound(CsmsError):
    pass
