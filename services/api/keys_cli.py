"""`csms api-key create|list|revoke`: operator API keys from the command line (ADR 017 §8).

    csms api-key create --name NAME --role ROLE [--expires-at 2027-01-01T00:00:00Z]
    csms api-key list
    csms api-key revoke ID

Works on the store of CSMS_STORE_URL (a SQLite store is migrated first, as `csms run`
would; a Cassandra store must have been migrated with `csms migrate`) with the pepper the
runtime loads (CSMS_AUTH_PEPPER, or `.csms/pepper` in CSMS_STATE_DIR): a key created here
works on every API process sharing that store and pepper. `create` prints the key once;
nothing else ever shows it. A revoked key stops working within KEY_CACHE_S seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from typing import Sequence

from services.api.keys import KEY_CACHE_S, check_name, create_key, list_keys, revoke_key
from services.api.roles import ALL_ROLES
from services.common.config import Settings, load_settings
from services.common.errors import StoreUnavailable
from services.common.passwords import load_pepper
from services.common.runtime import store_options
from services.common.store import store_from_url
from services.common.timeutil import parse_ocpp, to_ocpp, utcnow

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="csms api-key", description="Operator API keys (docs/security.md).")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("create", help="create a key and print it (once)")
    c.add_argument("--name", required=True, help="what the key is for (shown in lists and the audit log)")
    c.add_argument("--role", required=True, choices=ALL_ROLES)
    c.add_argument("--expires-at", help="ISO 8601 time after which the key is refused")
    sub.add_parser("list", help="list keys (never the keys themselves)")
    r = sub.add_parser("revoke", help="revoke a key by id")
    r.add_argument("id")
    return p


def _when(value: datetime | None) -> str:
    return to_ocpp(value) if value else "-"


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    store = store_from_url(settings.store_url, **store_options(settings))
    await store.start()
    try:
        if settings.store_url.startswith("sqlite://"):
            await store.migrate()
        now = utcnow()
        if args.command == "create":
            expires = parse_ocpp(args.expires_at) if args.expires_at else None
            if expires is not None and expires <= now:
                print("csms api-key create: --expires-at must be in the future", file=sys.stderr)
                return 2
            name = args.name.strip()
            if (why := check_name(name)) is not None:
                print(f"csms api-key create: --name {why}", file=sys.stderr)
                return 2
            key, text = await create_key(store, load_pepper(), name=name, role=args.role,
                                         created_by="cli", now=now, expires_at=expires)
            print(f"created api key {key.id} ({key.name}, role {key.role}, expires {_when(key.expires_at)})")
            print("key (shown once, store it now):")
            print(text)
            return 0
        if args.command == "list":
            keys = await list_keys(store)
            print(f"{'ID':16}  {'ROLE':9}  {'STATE':8}  {'CREATED':24}  {'LAST USED':24}  NAME")
            for k in keys:
                state = "revoked" if k.revoked_at else ("expired" if k.refusal(now) == "expired" else "active")
                print(f"{k.id:16}  {k.role:9}  {state:8}  {_when(k.created_at):24}  {_when(k.last_used_at):24}  {k.name}")
            return 0
        revoked = await revoke_key(store, args.id, now)
        if revoked is None:
            print(f"csms api-key revoke: no key {args.id!r}", file=sys.stderr)
            return 1
        print(f"revoked api key {revoked.id} ({revoked.name}) at {_when(revoked.revoked_at)}; "
              f"refused everywhere within {KEY_CACHE_S:g} s")
        return 0
    finally:
        await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(argv) if argv is not None else None)
    if getattr(args, "expires_at", None):
        try:
            parse_ocpp(args.expires_at)
        except ValueError:
            print("csms api-key create: --expires-at must be an ISO 8601 time, e.g. 2027-01-01T00:00:00Z",
                  file=sys.stderr)
            return 2
    try:
        return asyncio.run(_run(args, load_settings()))
    except StoreUnavailable as exc:
        print(f"csms api-key: store unavailable: {exc}", file=sys.stderr)
        return 1
