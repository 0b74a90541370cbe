"""A blocking client for the logmond socket (logmonctl's only way in). Stdlib + msgpack only.

Failures become exceptions whose message names the socket and the next step, so the CLI can
print str(exc) as is.
"""
from __future__ import annotations

import itertools
import socket
from collections import deque
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

import msgpack

from shared import protocol as p
from shared.paths import SERVICE_SOCKET, default_socket
from shared.protocol import ApiError

# Bytes asked of recv() at a time.
READ_CHUNK = 64 * 1024


def start_hint(path: str, env: Mapping[str, str] | None = None, uid: int | None = None) -> str:
    """What to do when no logmond answers on path. systemctl only helps for the service's own
    socket; a socket named by hand was served by a logmond started by hand."""
    if path == SERVICE_SOCKET:
        return "is logmond running? start it with `systemctl start logmond`"
    if path == default_socket(env, uid):
        return (f"is logmond running? the service listens on {SERVICE_SOCKET} (give --socket or set "
                f"LOGMOND_SOCKET), or start your own with `logmond --file LOG`")
    return f"is a logmond running with --socket {path}?"


def hung_hint(path: str) -> str:
    """What to do when a logmond accepted but does not answer."""
    return "it may be hung; check `systemctl status logmond`" if path == SERVICE_SOCKET else "it may be hung"


class ClientError(Exception):
    """Base of the failures logmonctl reports without a traceback."""


class DaemonUnreachable(ClientError):
    """No daemon to talk to: no socket, nobody listening, no answer, or the connection dropped."""


class PermissionDenied(ClientError):
    """The socket exists but this user may not connect to it."""


class ProtocolMismatch(ClientError):
    """The daemon speaks another protocol version, or sent something that is not the protocol."""


def connect_error(path: str, exc: OSError, timeout: float | None = None) -> ClientError:
    """The exception to raise for a failed connect() to path."""
    if isinstance(exc, FileNotFoundError):
        return DaemonUnreachable(f"no logmond socket at {path}: {start_hint(path)}")
    if isinstance(exc, ConnectionRefusedError):
        return DaemonUnreachable(f"nothing listens on {path} (a stale socket from a stopped logmond?): "
                                 f"{start_hint(path)}")
    if isinstance(exc, PermissionError):
        return PermissionDenied(f"permission denied on {path}: run as root or as a member of the socket's group")
    if isinstance(exc, TimeoutError):
        return DaemonUnreachable(f"logmond did not accept a connection on {path} within {timeout}s: "
                                 f"{hung_hint(path)}")
    return DaemonUnreachable(f"cannot connect to {path}: {exc.strerror or exc}: {start_hint(path)}")


class Client:
    """One connection: `with Client(path) as c: c.call("status")`; connect() says hello first."""

    protocol = p.PROTOCOL  # the version this client announces in hello

    def __init__(self, path: str, timeout: float = 5.0, name: str = "logmonctl") -> None:
        self.path = path
        self.timeout = timeout
        self.name = name
        self.server_info: dict[str, Any] = {}
        self._sock: socket.socket | None = None
        self._unpacker = p.new_unpacker()
        self._ids = itertools.count(1)
        self._pushes: deque[dict[str, Any]] = deque()

    def __enter__(self) -> Client:
        if self._sock is None:
            self.connect()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def connect(self) -> dict[str, Any]:
        """Connect and check the protocol version before anything else; return the hello result."""
        self.close()
        self._unpacker = p.new_unpacker()
        self._pushes.clear()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise connect_error(self.path, exc, self.timeout) from exc
        self._sock = sock
        try:
            info = self.call("hello", protocol=self.protocol, client=self.name)
        except ApiError as exc:
            self.close()
            if exc.code == p.PROTOCOL_ERROR:
                raise ProtocolMismatch(f"logmond on {self.path}: {exc.message}") from exc
            raise
        except BaseException:
            self.close()
            raise
        if info.get("protocol") != self.protocol:
            self.close()
            raise ProtocolMismatch(f"logmond on {self.path} answered with protocol {info.get('protocol')!r}, "
                                   f"this client speaks {self.protocol}: use the logmonctl installed with logmond")
        self.server_info = info
        return info

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Send one request and return its result; ApiError if the daemon answers ok: false."""
        rid = next(self._ids)
        self._send(p.request(op, rid, **args))
        while True:
            msg = self._receive()
            if "event" in msg:
                self._pushes.append(msg)  # a push that overtook our reply: keep it for subscribe()
                continue
            reply_id, ok, body = self._parse_reply(msg)
            if reply_id not in (rid, p.NO_ID):
                continue  # the late reply to an earlier call that timed out
            if ok:
                return body
            raise ApiError(*body)

    def history(self, since: int, until: int, step: int, by: str | None = None) -> Iterator[dict[str, Any]]:
        """The steps of the `history` op over [since, until), asking page after page (`next`)."""
        start: int | None = since
        while start is not None:
            page = self.call("history", since=start, until=until, step=step, by=by)
            yield from page["steps"]
            start = page["next"]

    def alerts(self, since: int | None = None) -> Iterator[dict[str, Any]]:
        """Every alert event after id `since` (all when None), asking again while there are `more`."""
        while True:
            page = self.call("alerts", **({} if since is None else {"since": since}))
            yield from page["events"]
            if not page.get("more") or not page["events"]:
                return
            since = page["events"][-1]["id"]

    def subscribe(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Subscribe, then iterate over pushes as received; timeout None waits forever (--follow)."""
        self.call("subscribe")
        return self._iter_pushes(timeout)

    def _iter_pushes(self, timeout: float | None) -> Iterator[dict[str, Any]]:
        sock = self._connected()
        sock.settimeout(timeout)
        try:
            while True:
                while self._pushes:
                    yield self._pushes.popleft()
                msg = self._receive()
                if "event" in msg:
                    yield msg
                    continue
                _, ok, body = self._parse_reply(msg)
                if not ok:
                    raise ApiError(*body)
        finally:
            if self._sock is not None:
                self._sock.settimeout(self.timeout)

    # plumbing

    def _connected(self) -> socket.socket:
        if self._sock is None:
            raise RuntimeError("Client is not connected: call connect() or use it as a context manager")
        return self._sock

    def _send(self, msg: p.Message) -> None:
        sock = self._connected()
        try:
            sock.sendall(p.encode(msg))
        except TimeoutError as exc:
            raise DaemonUnreachable(f"logmond on {self.path} is not reading: {hung_hint(self.path)}") from exc
        except OSError as exc:
            # The daemon may have said why before closing (busy, hello timeout): report that.
            late = self._last_words()
            if late is not None:
                raise late from exc
            raise DaemonUnreachable(f"lost the connection to logmond on {self.path}: {exc.strerror or exc}") from exc

    def _last_words(self) -> ApiError | None:
        """The error the daemon sent before closing, if any (the socket is at EOF, so this cannot block)."""
        try:
            _, ok, body = self._parse_reply(self._receive())
        except ClientError:
            return None
        return None if ok else ApiError(*body)

    def _receive(self) -> dict[str, Any]:
        sock = self._connected()
        while True:
            try:
                obj = next(self._unpacker)
            except StopIteration:
                pass
            except (ValueError, msgpack.UnpackException) as exc:
                raise ProtocolMismatch(f"logmond on {self.path} sent a malformed message: {exc}") from exc
            else:
                if not isinstance(obj, dict):
                    raise ProtocolMismatch(f"logmond on {self.path} sent a {type(obj).__name__}, not a map")
                return obj
            try:
                data = sock.recv(READ_CHUNK)
            except TimeoutError as exc:
                raise DaemonUnreachable(
                    f"no answer from logmond on {self.path} within {sock.gettimeout()}s: "
                    f"{hung_hint(self.path)}") from exc
            except OSError as exc:
                raise DaemonUnreachable(
                    f"lost the connection to logmond on {self.path}: {exc.strerror or exc}") from exc
            if not data:
                raise DaemonUnreachable(f"logmond closed the connection on {self.path}")
            try:
                self._unpacker.feed(data)
            except msgpack.BufferFull as exc:
                raise ProtocolMismatch(f"logmond on {self.path} sent a message over {p.MAX_MESSAGE} bytes") from exc

    def _parse_reply(self, msg: dict[str, Any]) -> tuple[int, bool, Any]:
        try:
            return p.parse_reply(msg)
        except ValueError as exc:
            raise ProtocolMismatch(f"logmond on {self.path} sent a malformed reply: {exc}") from exc
