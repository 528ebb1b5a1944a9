"""Kafka topic names (public contract; schemas in proto/).

`CSMS_TOPIC_PREFIX` (default empty) namespaces every topic, e.g. for test runs sharing
one broker; production leaves it empty so the names below are what consumers see.
"""

from services.common.config import env_value

_PREFIX = str(env_value("CSMS_TOPIC_PREFIX"))  # read at import: topic names are module constants

EVENTS = f"{_PREFIX}csms.events.v1"       # key = station id
COMMANDS = f"{_PREFIX}csms.commands.v1"   # key = station id, partition = owning gateway's ordinal
SESSIONS = f"{_PREFIX}csms.sessions.v1"   # key = station id
CDRS = f"{_PREFIX}csms.cdrs.v1"           # key = station id
METER_VALUES = f"{_PREFIX}csms.meter-values.v1"  # key = station id (ADR 015)
SITES = f"{_PREFIX}csms.sites.v1"         # key = site id (ADR 015)
DATATRANSFER = f"{_PREFIX}csms.datatransfer.v1"  # key = station id: DataTransfer of configured vendors (ADR 016)
AUDIT = f"{_PREFIX}csms.audit.v1"         # key = actor (API key id or OIDC subject): every mutating API call (ADR 017)


def group(name: str) -> str:
    """A consumer group id, namespaced like the topics: clusters that share a broker with
    different prefixes (test runs, benchmarks) must not rebalance each other's groups."""
    return f"{_PREFIX}{name}"


# Dead letters (docs/dead-letters.md): records a consumer group could not process.
EVENTS_DLQ = f"{_PREFIX}csms.events.dlq.v1"


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of a consumed topic: csms.events.v1 -> csms.events.dlq.v1,
    any other topic -> `<topic>.dlq`."""
    if topic == EVENTS:
        return EVENTS_DLQ
    return f"{topic}.dlq"
