"""A minimal WebSocket client on asyncio streams for load generation (RFC 6455 client
side: handshake with Basic auth and a subprotocol, masked text frames, ping/pong, close).

Much cheaper per connection than aiohttp's or websockets' clients, which matters on a
2-core machine where the clients share the CPU with the server under test. It offers no
permessage-deflate (like most 1.6 chargers). Not part of the product.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct

__all__ = ["RawWs", "HandshakeError", "basic"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class HandshakeError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _mask(data: bytes, key: bytes) -> bytes:
    n = len(data)
    if n == 0:
        return data
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


class RawWs:
    __slots__ = ("reader", "writer", "subprotocol", "closed")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, subprotocol: str) -> None:
        self.reader, self.writer, self.subprotocol = reader, writer, subprotocol
        self.closed = False

    @classmethod
    async def connect(cls, host: str, port: int, path: str, *, protocol: str | None = None,
                      authorization: str | None = None) -> "RawWs":
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        try:
            key = base64.b64encode(os.urandom(16))
            lines = [
                f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
                f"Sec-WebSocket-Key: {key.decode()}", "Sec-WebSocket-Version: 13",
            ]
            if protocol:
                lines.append(f"Sec-WebSocket-Protocol: {protocol}")
            if authorization:
                lines.append(f"Authorization: {authorization}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            parts = status_line.split(" ", 2)
            status = int(parts[1])
            headers = {}
            for hl in header_lines:
                if ":" in hl:
                    k, v = hl.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            if status != 101:
                raise HandshakeError(status, parts[2] if len(parts) > 2 else "")
            expect = base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
            if headers.get("sec-websocket-accept") != expect:
                raise HandshakeError(101, "bad Sec-WebSocket-Accept")
            return cls(reader, writer, headers.get("sec-websocket-protocol", ""))
        except BaseException:
            writer.close()
            raise

    def _frame(self, opcode: int, payload: bytes) -> bytes:
        n = len(payload)
        key = os.urandom(4)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        return head + key + _mask(payload, key)

    def send_text(self, text: str) -> None:
        self.writer.write(self._frame(0x1, text.encode()))

    async def recv_text(self) -> str:
        """The next text message; answers pings; raises ConnectionError on close/EOF."""
        buf = b""
        while True:
            b0, b1 = await self.reader.readexactly(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            if b1 & 0x80:
                mkey = await self.reader.readexactly(4)
                payload = _mask(await self.reader.readexactly(n), mkey)
            else:
                payload = await self.reader.readexactly(n) if n else b""
            if opcode == 0x9:
                self.writer.write(self._frame(0xA, payload))
                continue
            if opcode == 0xA:
                continue
            if opcode == 0x8:
                self.closed = True
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                raise ConnectionError(f"closed by server ({code})")
            buf += payload
            if b0 & 0x80:
                return buf.decode()

    async def close(self, code: int = 1000) -> None:
        if self.closed:
            self.writer.close()
            return
        self.closed = True
        try:
            self.writer.write(self._frame(0x8, struct.pack("!H", code)))
            await asyncio.wait_for(self.writer.drain(), 2.0)
        except (ConnectionError, asyncio.TimeoutError, OSError):
            pass
        self.writer.close()
