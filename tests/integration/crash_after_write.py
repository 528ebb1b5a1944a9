"""A sessions processor that dies (os._exit, like SIGKILL) right after the store write of
the event whose message id is CRASH_ON, before the bus can commit its offset.
Run as: python -m tests.integration.crash_after_write  (env as for `csms sessions`)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from services.common import codec
from services.common.bus.port import Record
from services.common.config import load_settings
from services.common.runtime import bootstrap
from services.common import topics
from services.sessions.wiring import GROUP, build_handler


async def main() -> None:
    crash_on = os.environ["CRASH_ON"]
    marker = Path(os.environ["CRASH_MARKER"])
    rt = bootstrap(load_settings())
    await rt.start()
    sessions = build_handler(rt)

    async def handler(record: Record) -> None:
        await sessions.handle_record(record)
        env = codec.decode_event(record.value)
        if env.message_id == crash_on:
            marker.write_text(f"{record.partition}:{record.offset}\n")
            sys.stdout.flush()
            os._exit(137)  # the write is done; the offset is not committed

    await rt.bus.subscribe(topics.EVENTS, GROUP, handler)
    await asyncio.sleep(120)


if __name__ == "__main__":
    asyncio.run(main())
