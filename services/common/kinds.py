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
    "LOCAL_LIST",
    "LOCAL_LIST_SYNC",
    "TOKENS_REVISION",
    "RESERVATION",
    "RESERVATION_TOKEN",
    "RESERVATION_OPEN",
    "CHARGING_PROFILES",
    "CHARGING_PROFILES_REPORT",
    "DISPLAY_MESSAGES",
    "DISPLAY_MESSAGES_REPORT",
    "CUSTOMER_INFORMATION",
    "CHARGING_CAPABILITY",
    "COST_UPDATE",
    "TOKEN_SESSION",
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
# drivers and energy (ADR 018)
LOCAL_LIST: Final = "local_list"  # API: a station's desired local authorization list (id = station; ADR 018)
LOCAL_LIST_SYNC: Final = "local_list_sync"  # stations-drivers: what was sent to / confirmed by the station (id = station)
TOKENS_REVISION: Final = "tokens_revision"  # API: bumped on every token change (one document, id 'tokens'): synced local lists follow it
RESERVATION: Final = "reservation"  # API creates/cancels, stations-drivers moves it on (versioned writes; parent = station)
RESERVATION_TOKEN: Final = "reservation_token"  # API: index of a token's reservations (id = reservation id, parent = id token; written once)
RESERVATION_OPEN: Final = "reservation_open"  # API writes, whoever makes the reservation final deletes: the open reservations (parent = "open")
CHARGING_PROFILES: Final = "charging_profiles"  # stations-drivers: the profiles the CSMS installed on a station (id = station)
CHARGING_PROFILES_REPORT: Final = "charging_profiles_report"  # stations-drivers: a ReportChargingProfiles answer assembled (parent = station)
DISPLAY_MESSAGES: Final = "display_messages"  # stations-drivers: messages the CSMS set on a station (id = station)
DISPLAY_MESSAGES_REPORT: Final = "display_messages_report"  # stations-drivers: a NotifyDisplayMessages answer assembled (parent = station)
CUSTOMER_INFORMATION: Final = "customer_information"  # stations-drivers: a NotifyCustomerInformation answer assembled (parent = station)
CHARGING_CAPABILITY: Final = "charging_capability"  # smart charging: whether a station takes charging profiles (id = station)
COST_UPDATE: Final = "cost_update"  # billing: the last running cost sent to a station for a session (id = session)
TOKEN_SESSION: Final = "token_session"  # sessions processor: index of a token's sessions (id = session, parent = id token)
