"""The daemon's Unix-socket API: request/reply control plus a push stream of snapshots and alerts.

One asyncio Protocol per connection, so writes never block the loop: a client that does not
read sees its snapshots conflated into a one-slot mailbox, its alerts queued up to a bound,
and is dropped past the bound, while every other client is served as usual.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import socket
import stat
import struct
from collections import deque
from typing import Any, Callable

import msgpack

from logmond import __version__
from shared import protocol as p

log = logging.getLogger(__name__)

# Connections served at once; one more is told BUSY and closed.
MAX_CLIENTS = 64
# Seconds a new connection has to say hello before it is closed.
HELLO_TIMEOUT = 5.0
# Seconds a message may take from its first byte to its last before the client is dropped.
MESSAGE_TIMEOUT = 5.0
# Unsent bytes a client may hold in its transport buffer before it is dropped.
MAX_PENDING_BYTES = 4 * p.MAX_MESSAGE
# Alerts queued for a subscriber that is not reading before it is dropped (alerts are never skipped).
MAX_QUEUED_ALERTS = 1000
# Snapshots in a row (about one a second) a subscriber may leave unread before it is dropped.
MAX_STALLED_SNAPSHOTS = 30
# Socket permissions: owner and group may connect.
SOCKET_MODE = 0o660
# Mode of the socket's directory when we create it.
DIR_MODE = 0o755
# Pending connections the kernel queues before accept().
LISTEN_BACKLOG = 128
# Seconds to wait for an existing socket to answer before calling it live.
PROBE_TIMEOUT = 1.0
# Seconds a closing connection gets to flush its last message before it is aborted.
CLOSE_GRACE = 1.0
# Longest socket path the kernel accepts (sizeof sun_path - 1).
SUN_PATH_MAX = 107
# Suffixes of the files kept beside the socket: the bind-then-rename name and the lock.
TMP_SUFFIX = ".tmp"
LOCK_SUFFIX = ".lock"

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

Handler = Callable[[str, dict[str, Any]], dict[str, Any]]


class AlreadyRunning(Exception):
    """Another daemon holds the lock or answers on the socket; starting would steal its path."""


def peer_credentials(sock: socket.socket) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of the process that connected, as the kernel recorded it at connect()."""
    try:
        return _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    except OSError:
        return None


def shutdown_allowed(uid: int | None) -> bool:
    """Only root and the daemon's own user may stop it; group members may only read."""
    return uid is not None and uid in (0, os.geteuid())


class _Connection(asyncio.Protocol):
    """One client: decodes requests, answers in order, and buffers pushes without blocking."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.unpacker = p.new_unpacker()
        self.received = 0                # bytes fed to the unpacker
        self.boundary = 0                # stream offset where the message in progress began
        self.peer: tuple[int, int, int] | None = None
        self.helloed = False
        self.subscribed = False
        self.closing = False
        self.paused = False              # the transport holds unsent bytes
        self.snapshot: bytes | None = None   # newest snapshot not yet written: a one-slot mailbox
        self.stalled = 0                 # snapshots put in the mailbox since the transport last drained
        self.alerts: deque[bytes] = deque()
        self.timers: list[asyncio.TimerHandle] = []
        self.message_deadline: asyncio.TimerHandle | None = None  # armed while a message is partial

    def __repr__(self) -> str:
        if self.peer is None:
            return "client(?)"
        return f"client(pid={self.peer[0]} uid={self.peer[1]})"

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # High water 0: pause_writing() fires whenever anything is left unsent, resume_writing()
        # once all of it went out; that is exactly when a snapshot may be written or must wait.
        transport.set_write_buffer_limits(high=0, low=0)
        self.peer = peer_credentials(transport.get_extra_info("socket"))
        if not self.server._admit(self):
            log.warning("refusing %r: %d clients connected", self, self.server.clients)
            self.finish(p.error(p.NO_ID, p.BUSY,
                                f"logmond serves at most {self.server.max_clients} clients; try again later"))
            return
        log.debug("%r connected", self)
        self.later(self.server.hello_timeout, self._hello_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.snapshot = None
        self.alerts.clear()
        for timer in self.timers:
            timer.cancel()
        self.server._forget(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.stalled = 0
        pending = b"".join(self.alerts) + (self.snapshot or b"")
        self.alerts.clear()
        self.snapshot = None
        if pending:
            self.write(pending)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.received += len(data)
        try:
            self.unpacker.feed(data)
        except msgpack.BufferFull:
            self.too_large()
            return
        while not self.closing:
            try:
                obj = next(self.unpacker)
            except StopIteration:
                # The buffer limit bounds only unparsed bytes: containers are parsed piecemeal and
                # would grow without end, so bound the bytes of the message in progress too.
                if self.received - self.boundary > p.MAX_REQUEST:
                    self.too_large()
                elif self.received > self.boundary and self.message_deadline is None:
                    # msgpack checks a string's declared length only once all of it is here: a
                    # client that declares 2 MiB and stops must not hold its slot for ever.
                    self.message_deadline = self.later(MESSAGE_TIMEOUT, self._message_expired)
                return
            except (ValueError, msgpack.UnpackException) as exc:
                if p.unpack_error_code(exc) == p.TOO_LARGE:
                    self.too_large()
                else:
                    self.finish(p.error(p.NO_ID, p.BAD_REQUEST, f"malformed msgpack: {exc}"))
                return
            end = self.unpacker.tell()
            size, self.boundary = end - self.boundary, end
            if self.message_deadline is not None:
                self.message_deadline.cancel()
                self.message_deadline = None
            if size > p.MAX_REQUEST:
                self.too_large()
                return
            self.handle(obj)

    def _message_expired(self) -> None:
        self.finish(p.error(p.NO_ID, p.BAD_REQUEST, f"message not completed within {MESSAGE_TIMEOUT:.0f}s"))

    def too_large(self) -> None:
        self.finish(p.error(p.NO_ID, p.TOO_LARGE, f"request larger than {p.MAX_REQUEST} bytes"))

    # requests

    def handle(self, obj: object) -> None:
        """Answer one decoded message; every failure becomes an error reply, never an exception."""
        rid = p.request_id(obj)
        op = "?"
        try:
            op, rid, args = p.parse_request(obj)
            if op == "hello":
                self.hello(rid, args)
                return
            if not self.helloed:
                raise p.ApiError(p.HELLO_REQUIRED, f"send hello (protocol {p.PROTOCOL}) before {op!r}")
            if op == "ping":
                self.respond(rid, {"pong": True})
            elif op == "subscribe":
                self.respond(rid, {"seq": self.server.seq})
                self.subscribed = True
                if self.server._latest is not None:
                    self.push_snapshot(self.server._latest)
            elif op == "shutdown":
                uid = self.peer[1] if self.peer else None
                if not shutdown_allowed(uid):
                    raise p.ApiError(p.PERMISSION, f"only root or uid {os.geteuid()} may stop logmond")
                log.info("shutdown requested by %r", self)
                self.respond(rid, {})
                asyncio.get_running_loop().call_soon(self.server._shutdown)
            else:
                result = self.server.handler(op, args)
                if not isinstance(result, dict):
                    raise TypeError(f"handler returned {type(result).__name__} for {op!r}, not a dict")
                self.respond(rid, result)
        except p.ApiError as exc:
            self.send(p.error(rid, exc.code, exc.message))
        except Exception:
            log.exception("request %r from %r failed", op, self)
            self.send(p.error(rid, p.INTERNAL, f"internal error in {op!r}; see the logmond log"))

    def hello(self, rid: int, args: dict[str, Any]) -> None:
        version, client = args.get("protocol"), args.get("client", "?")
        if not isinstance(version, int) or isinstance(version, bool) or not isinstance(client, str):
            raise p.ApiError(p.BAD_REQUEST, "hello needs an integer 'protocol' and a string 'client'")
        if version != p.PROTOCOL:
            log.warning("%r (%s) speaks protocol %d, not %d", self, client, version, p.PROTOCOL)
            self.finish(p.error(rid, p.PROTOCOL_ERROR,
                                f"{client} speaks protocol {version} but logmond {__version__} speaks "
                                f"protocol {p.PROTOCOL}: use the logmonctl installed with this logmond"))
            return
        result = {"version": __version__, **self.server.hello_info(), "protocol": p.PROTOCOL, "pid": os.getpid()}
        self.helloed = True
        for timer in self.timers:
            timer.cancel()
        log.debug("%r is %s", self, client)
        self.respond(rid, result)

    def _hello_expired(self) -> None:
        if not self.helloed:
            log.info("closing %r: no hello within %gs", self, self.server.hello_timeout)
            self.finish(p.error(p.NO_ID, p.HELLO_REQUIRED, f"no hello within {self.server.hello_timeout:g}s"))

    # writing

    def respond(self, rid: int, result: dict[str, Any]) -> None:
        try:
            frame = p.encode(p.reply(rid, result))
        except Exception:
            log.exception("cannot encode the reply to request %d", rid)
            frame = p.encode(p.error(rid, p.INTERNAL, "internal error: unencodable reply"))
        if len(frame) > p.MAX_MESSAGE:
            log.error("reply to request %d is %d bytes, over the limit", rid, len(frame))
            frame = p.encode(p.error(rid, p.INTERNAL, "internal error: reply too large"))
        self.write(frame)

    def send(self, msg: p.Message) -> None:
        self.write(p.encode(msg))

    def write(self, frame: bytes) -> None:
        """Queue bytes without ever waiting; a client that lets them pile up is dropped."""
        if self.closing or self.transport is None:
            return
        self.transport.write(frame)
        pending = self.transport.get_write_buffer_size()
        if pending > MAX_PENDING_BYTES:
            self.drop(f"{pending} bytes unsent")

    def push_snapshot(self, frame: bytes) -> None:
        """Write now if the socket is keeping up, else replace the waiting one (conflation)."""
        if self.closing:
            return
        if not self.paused:
            self.write(frame)
            return
        self.snapshot = frame
        self.stalled += 1
        if self.stalled > MAX_STALLED_SNAPSHOTS:
            self.drop(f"{self.stalled} snapshots left unread")

    def push_alert(self, frame: bytes) -> None:
        """Alerts are never skipped: queue them behind unsent bytes, up to a bound."""
        if self.closing:
            return
        if not self.paused:
            self.write(frame)
            return
        self.alerts.append(frame)
        if len(self.alerts) > MAX_QUEUED_ALERTS:
            self.drop(f"{len(self.alerts)} alerts left unread")

    def later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        timer = asyncio.get_running_loop().call_later(delay, callback)
        self.timers.append(timer)
        return timer

    def finish(self, msg: p.Message) -> None:
        """Send a last message, then close; a peer that will not read it is aborted after a grace."""
        if self.closing or self.transport is None:
            return
        self.write(p.encode(msg))
        self.close()

    def close(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.closing = True
        self.transport.close()
        self.later(CLOSE_GRACE, self.transport.abort)

    def drop(self, reason: str) -> None:
        log.warning("dropping %r: %s", self, reason)
        self.closing = True
        self.snapshot = None
        self.alerts.clear()
        if self.transport is not None:
            self.transport.abort()


class Server:
    """The daemon's socket. The owner supplies the ops (handler), the hello extras and shutdown.

    `handler(op, args)` is called in the event loop for every op but hello, ping, subscribe and
    shutdown; it returns the result map or raises ApiError (UNKNOWN_OP for an op it lacks).
    """

    def __init__(self, path: str, handler: Handler, hello_info: Callable[[], dict[str, Any]],
                 on_shutdown: Callable[[], None], *, hello_timeout: float = HELLO_TIMEOUT,
                 max_clients: int = MAX_CLIENTS) -> None:
        self.path = path
        self.handler = handler
        self.hello_info = hello_info
        self.on_shutdown = on_shutdown
        self.hello_timeout = hello_timeout
        self.max_clients = max_clients
        self._conns: set[_Connection] = set()     # admitted clients
        self._refused: set[_Connection] = set()   # told BUSY, still flushing that
        self._server: asyncio.AbstractServer | None = None
        self._lock_fd: int | None = None
        self._socket_id: tuple[int, int] | None = None
        self._seq = 0
        self._latest: bytes | None = None
        self._all_gone: asyncio.Future[None] | None = None

    @property
    def clients(self) -> int:
        """Connections currently served (a refused BUSY one is not counted)."""
        return len(self._conns)

    @property
    def seq(self) -> int:
        """Sequence number of the last published snapshot (0 before the first)."""
        return self._seq

    @property
    def lock_path(self) -> str:
        return self.path + LOCK_SUFFIX

    # lifecycle

    async def start(self) -> None:
        """Take the lock, refuse a live daemon, replace a stale socket, listen. OSError if impossible."""
        if len(os.fsencode(self.path)) + len(TMP_SUFFIX) > SUN_PATH_MAX:
            raise OSError(errno.ENAMETOOLONG, f"socket path longer than {SUN_PATH_MAX - len(TMP_SUFFIX)} bytes",
                          self.path)
        self._make_directory()
        self._lock()
        try:
            self._probe()
            sock = self._bind()
            try:
                self._server = await asyncio.get_running_loop().create_unix_server(
                    lambda: _Connection(self), sock=sock)
            except BaseException:
                sock.close()
                self._remove_socket()
                raise
        except BaseException:
            self._unlock()
            raise
        log.info("listening on %s", self.path)

    async def close(self) -> None:
        """Stop accepting, let clients flush briefly, remove the socket file and the lock."""
        if self._server is not None:
            self._server.close()
            self._remove_socket()
            if self._conns or self._refused:
                self._all_gone = asyncio.get_running_loop().create_future()
                for conn in [*self._conns, *self._refused]:
                    conn.close()
                try:
                    await asyncio.wait_for(asyncio.shield(self._all_gone), CLOSE_GRACE)
                except TimeoutError:
                    for conn in [*self._conns, *self._refused]:
                        conn.drop("still connected at shutdown")
                    await self._all_gone
            await self._server.wait_closed()
            self._server = None
        self._unlock()

    def _make_directory(self) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
            os.chmod(directory, DIR_MODE)  # makedirs' mode is filtered by the umask

    def _lock(self) -> None:
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
                os.close(fd)
                raise AlreadyRunning(f"logmond is already running (pid {pid or '?'}): {self.lock_path} is locked")
            except BaseException:
                os.close(fd)
                raise
            # The previous holder unlinks the file on close: if it did so between our open() and
            # flock(), we locked an orphan and must retry on the new file.
            try:
                st = os.stat(self.lock_path)
                current = (st.st_dev, st.st_ino) == (os.fstat(fd).st_dev, os.fstat(fd).st_ino)
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.lock_path)  # unlinked while still held, so no second daemon can slip in
        os.close(self._lock_fd)
        self._lock_fd = None

    def _probe(self) -> None:
        """Tell a live daemon (it answers connect) from a stale file left by a dead one."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(errno.EEXIST, "exists and is not a socket; remove it or choose another path",
                                  self.path)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(PROBE_TIMEOUT)
            try:
                probe.connect(self.path)
            except ConnectionRefusedError:
                log.info("replacing stale socket %s", self.path)
                return
            except TimeoutError:
                pass  # alive but its backlog is full
        raise AlreadyRunning(f"something already answers on {self.path}; is another logmond running?")

    def _bind(self) -> socket.socket:
        """Bind under a temporary name, chmod, then rename: the path never exists with a wrong mode."""
        tmp = self.path + TMP_SUFFIX
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(tmp)
            os.chmod(tmp, SOCKET_MODE)
            sock.listen(LISTEN_BACKLOG)
            os.rename(tmp, self.path)
            st = os.stat(self.path)
        except BaseException:
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self._socket_id = (st.st_dev, st.st_ino)
        sock.setblocking(False)
        return sock

    def _remove_socket(self) -> None:
        """Unlink the socket file (3.11 leaves it), unless someone else's socket replaced it."""
        if self._socket_id is None:
            return
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._socket_id:
                os.unlink(self.path)
        self._socket_id = None

    # connections

    def _admit(self, conn: _Connection) -> bool:
        if len(self._conns) >= self.max_clients:
            self._refused.add(conn)
            return False
        self._conns.add(conn)
        return True

    def _forget(self, conn: _Connection) -> None:
        self._conns.discard(conn)
        self._refused.discard(conn)
        log.debug("%r gone, %d left", conn, len(self._conns))
        if not self._conns and not self._refused and self._all_gone is not None and not self._all_gone.done():
            self._all_gone.set_result(None)

    def _shutdown(self) -> None:
        try:
            self.on_shutdown()
        except Exception:
            log.exception("shutdown callback failed")

    # pushes

    def publish_snapshot(self, data: dict[str, Any]) -> None:
        """Encode once, hand to every subscriber; a slow one keeps only the newest."""
        self._seq += 1
        frame = p.encode(p.push(p.EVENT_SNAPSHOT, seq=self._seq, data=data))
        if len(frame) > p.MAX_MESSAGE:
            log.error("snapshot %d is %d bytes, over the %d limit: not sent", self._seq, len(frame), p.MAX_MESSAGE)
            return
        self._latest = frame
        for conn in [c for c in self._conns if c.subscribed]:
            conn.push_snapshot(frame)

    def publish_alert(self, event: dict[str, Any]) -> None:
        """Push an alert to every subscriber at once, in order; none is skipped."""
        frame = p.encode(p.push(p.EVENT_ALERT, **event))
        if len(frame) > p.MAX_MESSAGE:
            log.error("alert is %d bytes, over the %d limit: not sent", len(frame), p.MAX_MESSAGE)
            return
        for conn in [c for c in self._conns if c.subscribed]:
            conn.push_alert(frame)
