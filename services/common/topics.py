"""Kafka topic names (public contract; schemas in proto/)."""

EVENTS = "csms.events.v1"       # key = station id
COMMANDS = "csms.commands.v1"   # key = station id, partition = owning gateway's ordinal
SESSIONS = "csms.sessions.v1"   # key = station id
CDRS = "csms.cdrs.v1"           # key = station id
