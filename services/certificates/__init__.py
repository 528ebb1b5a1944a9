"""The certificates service: the CA port, the `csms ca` tool and the processor that signs
station CSRs, tracks issued certificates and asks for renewals (ADR 017)."""
