"""Document kinds: the `kind` of every JSON document in the store's document table.

One constant per kind, so a kind is named once and a typo is an import error, not an
empty read. Each kind has one writer (the service named), which owns its shape; readers
go through that service's mapper (ADR 012).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "API_KEY",
    "AUDIT",
    "CDR",
    "CERTIFICATE",
    "INSTALLED_CERTIFICATES",
    "COMMAND",
    "DEVICE_MODEL",
    "FIRMWARE_CAMPAIGN",
    "LOG_UPLOAD",
    "REPORT",
    "OPEN_SESSIONS",
    "REMOTE_START",
    "SESSION",
    "SITE",
    "SITE_STATE",
    "STATION_OPS",
    "STATION_STATUS",
    "TARIFF",
]

SESSION: Final = "session"                # sessions processor: one per charging session
OPEN_SESSIONS: Final = "open_sessions"    # sessions processor: a station's open sessions (index)
REMOTE_START: Final = "remote_start"      # sessions processor: a RemoteStart awaiting its session
STATION_STATUS: Final = "station_status"  # sessions processor: connection, boot, connectors
STATION_OPS: Final = "station_ops"        # stations processor: firmware, log, availability, outage, meters, limits (ADR 016)
COMMAND: Final = "command"                # stations processor: a command and its result (ADR 016)
DEVICE_MODEL: Final = "device_model"      # stations processor (device model stage): a station's inventory
REPORT: Final = "report"                  # stations processor (device model stage): a report being assembled
FIRMWARE_CAMPAIGN: Final = "firmware_campaign"  # API creates/cancels; the campaign controller moves it on
LOG_UPLOAD: Final = "log_upload"          # API creates the one-time upload slot; the gateway's upload endpoint fills it
CERTIFICATE: Final = "certificate"        # certificates processor: one per certificate the CA issued (id = serial hex, parent = station)
INSTALLED_CERTIFICATES: Final = "installed_certificates"  # API: a station's trust anchors, from its last GetInstalledCertificateIds answer
API_KEY: Final = "api_key"                # API: one per operator API key (hashed secret, role, revoked_at)
AUDIT: Final = "audit"                    # API: one per mutating call (parent = UTC day), see ADR 017
CDR: Final = "cdr"                        # billing: one per priced session
TARIFF: Final = "tariff"                  # API (operators): prices
SITE: Final = "site"                      # API (operators): a site and its grid limit
SITE_STATE: Final = "site_state"          # smart charging: a site's allocation state
