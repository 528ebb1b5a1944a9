"""A station that does the WebSocket upgrade by hand on a plain TCP socket and then never
reads again (tests of slow and dead peers): its kernel receive window is small and stays
full, so whatever the gateway sends piles up on the gateway's side. `gone()` reads
everything afterwards and says whether the gateway ended the TCP connection."""

from __future__ import annotations

import asyncio
import os
import socket
import struct

from tests.integration_inproc.gateway.harness import upgrade_request


class Deaf:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    async def connect(cls, port: int, station_id: str, password: str, *, rcvbuf: int = 4096) -> "Deaf":
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: the window is negotiated
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, upgrade_request(f"/ocpp/{station_id}", station_id, password))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 1), 5.0)  # byte by byte: nothing past the head
            if not chunk:
                raise ConnectionError(f"closed during the handshake: {head!r}")
            head += chunk
        status = int(head.split(b" ", 2)[1])
        if status != 101:
            sock.close()
            raise ConnectionError(f"upgrade refused: {head!r}")
        return cls(sock)

    async def send_text(self, text: str) -> None:
        payload = text.encode()
        key = os.urandom(4)
        n = len(payload)
        head = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x81, 0x80 | 126, n)
        masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        await asyncio.get_running_loop().sock_sendall(self.sock, head + key + masked)

    async def send_close(self, code: int) -> None:
        """A (masked) close frame: the client's half of the close handshake."""
        key = os.urandom(4)
        payload = struct.pack("!H", code)
        masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        await asyncio.get_running_loop().sock_sendall(self.sock, struct.pack("!BB", 0x88, 0x80 | len(payload)) + key + masked)

    async def read_until_close(self, timeout: float) -> bytes:
        """Read (this station does read, here) until a whole close frame has arrived."""
        loop = asyncio.get_running_loop()
        data = b""
        async with asyncio.timeout(timeout):
            while not close_frames(data):
                chunk = await loop.sock_recv(self.sock, 65536)
                if not chunk:
                    raise ConnectionError(f"EOF before a close frame: {data!r}")
                data += chunk
        return data

    async def gone(self, timeout: float) -> tuple[bool, bytes]:
        """Read until EOF or reset (True) or `timeout` (False); the bytes read."""
        loop = asyncio.get_running_loop()
        data = b""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    chunk = await loop.sock_recv(self.sock, 65536)
                    if not chunk:
                        return True, data
                    data += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True, data
        except TimeoutError:
            return False, data

    def close(self) -> None:
        self.sock.close()


def close_frames(data: bytes) -> list[tuple[int, str]]:
    """(code, reason) of every close frame in server-to-client bytes (unmasked frames)."""
    out, i = [], 0
    while i + 2 <= len(data):
        b0, b1 = data[i], data[i + 1]
        n, i = b1 & 0x7F, i + 2
        if n == 126:
            n, i = struct.unpack("!H", data[i:i + 2])[0], i + 2
        elif n == 127:
            n, i = struct.unpack("!Q", data[i:i + 8])[0], i + 8
        payload, i = data[i:i + n], i + n
        if b0 & 0x0F == 0x8 and len(payload) >= 2:
            out.append((struct.unpack("!H", payload[:2])[0], payload[2:].decode(errors="replace")))
    return out


def ping_frames(data: bytes) -> int:
    count, i = 0, 0
    while i + 2 <= len(data):
        b0, b1 = data[i], data[i + 1]
        n, i = b1 & 0x7F, i + 2
        if n == 126:
            n, i = struct.unpack("!H", data[i:i + 2])[0], i + 2
        elif n == 127:
            n, i = struct.unpack("!Q", data[i:i + 8])[0], i + 8
        i += n
        count += b0 & 0x0F == 0x9
    return count
