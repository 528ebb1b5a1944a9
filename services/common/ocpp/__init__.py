"""OCPP wire formats shared by the gateway and its producers (pure: no I/O, no service).

- `commands`: the one command vocabulary (snake_case, version-neutral) and its builders,
  command -> OCPP action + payload per version, and the station's answer -> a normalized
  result. The gateway builds CALLs from it; the API derives its list of command types.
- `profiles`: charging-profile payloads for a current limit (what `SetChargingLimit`
  becomes on the wire).
- `wire`: JSON encoding of values the CSMS writes into frames (Decimal, datetime).
"""
