"""`GET /metrics` over HTTP/1.1, from logmond's own event loop (no thread, no process).

A scraper is a client like any other: it must not stall ingestion. The request head is bounded
and must arrive within a deadline, the reply must be taken within one, connections are capped,
and each connection carries one request (`Connection: close`), which Prometheus handles.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from logmond import __version__

# Bytes of a request head (request line and headers): a scraper sends a few hundred.
MAX_REQUEST_BYTES = 8 * 1024
# Seconds a client has to send its request, and to take the reply.
REQUEST_DEADLINE = 5.0
REPLY_DEADLINE = 10.0
# Connections at once: Prometheus servers scraping one target are a handful; past this, a new
# connection is closed at once.
MAX_CONNECTIONS = 16
PATH = "/metrics"

log = logging.getLogger("logmond")

# (Accept header) -> (body, content type).
Render = Callable[[str], tuple[bytes, str]]


class MetricsServer:
    def __init__(self, host: str, port: int, render: Render) -> None:
        self.host, self.port = host, port
        self._render = render
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.refused = 0

    async def start(self) -> None:
        """Listen; OSError (port taken, address not here) for the caller to report."""
        self._server = await asyncio.start_server(self._accept, self.host, self.port, limit=MAX_REQUEST_BYTES)
        sockets = self._server.sockets
        if sockets and self.port == 0:
            self.port = sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= MAX_CONNECTIONS:
            self.refused += 1
            writer.transport.abort()
            return
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_DEADLINE)
            status, headers, body = self._answer(head)
            writer.write(_response(status, headers, body))
            await asyncio.wait_for(writer.drain(), REPLY_DEADLINE)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError, ValueError):
            pass  # the client went away, sent too much, or too slowly: nothing to answer
        finally:
            # A reply not taken in time is dropped, not waited for.
            if writer.transport.get_write_buffer_size():
                writer.transport.abort()
            else:
                writer.close()

    def _answer(self, head: bytes) -> tuple[str, dict[str, str], bytes]:
        """(status, headers, body) for a request head."""
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return "400 Bad Request", {}, b"a request line is METHOD TARGET HTTP/1.1\n"
        method, target, _ = parts
        if target.split("?", 1)[0] != PATH:
            return "404 Not Found", {}, b"logmond serves only /metrics\n"
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", {"Allow": "GET, HEAD"}, b"only GET /metrics\n"
        fields = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip().lower()] = value.strip()
        body, content_type = self._render(fields.get("accept", ""))
        headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        return "200 OK", headers, b"" if method == "HEAD" else body


def _response(status: str, headers: dict[str, str], body: bytes) -> bytes:
    """The whole response; a HEAD's Content-Length is the GET body's (headers say it)."""
    fields = {"Server": f"logmond/{__version__}", "Connection": "close", "Content-Length": str(len(body)),
              "Content-Type": "text/plain; charset=utf-8", **headers}
    head = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in fields.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
