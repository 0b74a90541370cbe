"""The daemon's Unix socket: connections, framing, limits, the hello handshake and the push stream.

What a request means is logmond.ops (the Api below); this module carries requests there and
replies back. One asyncio Protocol per connection, so writes never block the loop: a client that
does not read sees its snapshots conflated into a one-slot mailbox, its alerts queued up to a
bound, and is dropped past the bound, while every other client is served as usual.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import inspect
import logging
import os
import socket
import stat
import struct
from collections import deque
from typing import Any, Awaitable, Callable, Protocol

import msgpack

from logmond import __version__
from shared import protocol as p

log = logging.getLogger(__name__)

# Connections served at once; past that a newcomer takes the place of a long-silent
# non-subscriber, or is told BUSY and closed.
MAX_CLIENTS = 64
# Seconds a new connection has to say hello before it is closed.
HELLO_TIMEOUT = 5.0
# Seconds a non-subscriber may send nothing after its hello before it is closed.
IDLE_TIMEOUT = 60.0
# Seconds a non-subscriber must have been silent before a newcomer may take its place in a full
# table: more than a client's pause between the requests of one exchange.
EVICT_AFTER = 1.0
# Seconds between two warnings that newcomers are refused (each warning gives the count).
REFUSAL_WARNING_INTERVAL = 60.0
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
# Bytes of a connection's first receive buffer. msgpack allocates its read_size up front, by
# default all of the 1 MiB it may grow to: with connection churn those megabytes fragmented the
# heap (RSS up 100 MB over 20,000 connections). Requests are small; the buffer grows for a big one.
FIRST_BUFFER = 16 * 1024
# Longest socket path the kernel accepts (sizeof sun_path - 1).
SUN_PATH_MAX = 107
# Suffixes of the files kept beside the socket: the bind-then-rename name and the lock.
TMP_SUFFIX = ".tmp"
LOCK_SUFFIX = ".lock"

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class Api(Protocol):
    """The request/reply operations the server carries (logmond.ops.Ops)."""

    def call(self, op: str, args: dict[str, Any], peer_uid: int | None) -> dict[str, Any] | Awaitable[dict[str, Any]]:
        """The result map of every op but hello and subscribe, or an awaitable of it for an op
        whose work runs off the loop; ApiError (UNKNOWN_OP for an op it lacks)."""
        ...

    def hello_info(self) -> dict[str, Any]:
        """Extra keys of the hello reply."""
        ...


class AlreadyRunning(Exception):
    """Another daemon holds the lock or answers on the socket; starting would steal its path."""


def peer_credentials(sock: socket.socket) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of the process that connected, as the kernel recorded it at connect()."""
    try:
        return _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    except OSError:
        return None


def _break_transport_cycle(transport: asyncio.BaseTransport) -> None:
    """CPython before 3.12 keeps a bound method of a socket transport on the transport itself
    (python/cpython#100348): a cycle only the collector frees, and the daemon runs it rarely, so
    connection churn would pile up dead transports. Called once the transport is done."""
    if getattr(transport, "_read_ready_cb", None) is not None:
        transport._read_ready_cb = None  # type: ignore[attr-defined]


class _Connection(asyncio.Protocol):
    """One client: decodes requests, answers in order, and buffers pushes without blocking."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.unpacker: msgpack.Unpacker | None = p.new_unpacker(FIRST_BUFFER)
        self.received = 0                # bytes fed to the unpacker
        self.boundary = 0                # stream offset where the message in progress began
        self.heard = 0.0                 # loop time of the last bytes received (or of the connect)
        self.peer: tuple[int, int, int] | None = None
        self.helloed = False
        self.subscribed = False
        self.closing = False
        self.dropped = False             # ended by us for not reading
        self.paused = False              # the transport holds unsent bytes
        self.snapshot: bytes | None = None   # newest snapshot not yet written: a one-slot mailbox
        self.stalled = 0                 # snapshots put in the mailbox since the transport last drained
        self.alerts: deque[bytes] = deque()
        self.timers: dict[str, asyncio.TimerHandle] = {}  # by purpose: hello, idle, message, abort
        self.waiting: asyncio.Future[dict[str, Any]] | None = None  # the one request answered off the loop

    def __repr__(self) -> str:
        if self.peer is None:
            return "client(?)"
        return f"client(pid={self.peer[0]} uid={self.peer[1]})"

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.heard = asyncio.get_running_loop().time()
        # High water 0: pause_writing() fires whenever anything is left unsent, resume_writing()
        # once all of it went out; that is exactly when a snapshot may be written or must wait.
        transport.set_write_buffer_limits(high=0, low=0)
        self.peer = peer_credentials(transport.get_extra_info("socket"))
        if not self.server.admit(self):
            self.finish(p.error(p.NO_ID, p.BUSY,
                                f"logmond serves at most {self.server.max_clients} clients; try again later"))
            return
        log.debug("%r connected", self)
        self.later("hello", self.server.hello_timeout, self._hello_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        """Let go of everything at once: the daemon runs the garbage collector rarely, so what a
        closed connection held must be freed by reference counting alone."""
        self.closing = True
        for timer in self.timers.values():
            timer.cancel()  # a cancelled handle drops its callback, and with it this connection
        self.timers.clear()
        self.snapshot = None
        self.alerts.clear()
        self.unpacker = None
        if self.waiting is not None:
            self.waiting.cancel()
            self.waiting = None
        if self.transport is not None:
            _break_transport_cycle(self.transport)
            self.transport = None
        self.server.forget(self, lost=exc is not None or self.dropped)

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
        unpacker = self.unpacker
        if self.closing or unpacker is None:
            return
        self.heard = asyncio.get_running_loop().time()
        self.received += len(data)
        try:
            unpacker.feed(data)
        except msgpack.BufferFull:
            self.too_large()
            return
        while not self.closing:
            try:
                obj = next(unpacker)
            except StopIteration:
                # The buffer limit bounds only unparsed bytes: containers are parsed piecemeal and
                # would grow without end, so bound the bytes of the message in progress too.
                if self.received - self.boundary > p.MAX_REQUEST:
                    self.too_large()
                elif self.received > self.boundary and "message" not in self.timers:
                    # msgpack checks a string's declared length only once all of it is here: a
                    # client that declares 2 MiB and stops must not hold its slot for ever.
                    self.later("message", MESSAGE_TIMEOUT, self._message_expired)
                return
            except (ValueError, msgpack.UnpackException) as exc:
                if p.unpack_error_code(exc) == p.TOO_LARGE:
                    self.too_large()
                else:
                    self.finish(p.error(p.NO_ID, p.BAD_REQUEST, f"malformed msgpack: {exc}"))
                return
            end = unpacker.tell()
            size, self.boundary = end - self.boundary, end
            self.cancel("message")
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
            if op == "subscribe":
                self.subscribe(rid)
                return
            if self.waiting is not None:
                raise p.ApiError(p.BUSY, "one request at a time: wait for the reply to the one before")
            result = self.server.api.call(op, args, self.peer[1] if self.peer else None)
            if inspect.isawaitable(result):
                self.waiting = asyncio.ensure_future(result)
                self.waiting.add_done_callback(functools.partial(self._answered, rid, op))
                return
            if not isinstance(result, dict):
                raise TypeError(f"the api returned {type(result).__name__} for {op!r}, not a dict")
            self.respond(rid, result)
        except p.ApiError as exc:
            self.send(p.error(rid, exc.code, exc.message))
        except Exception:
            log.exception("request %r from %r failed", op, self)
            self.send(p.error(rid, p.INTERNAL, f"internal error in {op!r}; see the logmond log"))

    def _answered(self, rid: int, op: str, done: asyncio.Future[dict[str, Any]]) -> None:
        """The reply to a request answered off the loop, once its work is done."""
        if done.cancelled() or self.waiting is not done:
            return
        self.waiting = None
        exc = done.exception()
        if isinstance(exc, p.ApiError):
            self.send(p.error(rid, exc.code, exc.message))
        elif exc is not None:
            log.error("request %r from %r failed", op, self, exc_info=exc)
            self.send(p.error(rid, p.INTERNAL, f"internal error in {op!r}; see the logmond log"))
        else:
            self.respond(rid, done.result())

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
        result = {"version": __version__, **self.server.api.hello_info(), "protocol": p.PROTOCOL, "pid": os.getpid()}
        if not self.helloed:
            self.helloed = True
            self.cancel("hello")
            self.later("idle", self.server.idle_timeout, self._idle_expired)
        log.debug("%r is %s", self, client)
        self.respond(rid, result)

    def subscribe(self, rid: int) -> None:
        """Reply with the current sequence number, then the newest snapshot and every one after."""
        self.respond(rid, {"seq": self.server.seq})
        self.subscribed = True
        self.cancel("idle")  # a subscriber listens: its silence is expected
        latest = self.server.latest
        if latest is not None:
            self.push_snapshot(latest)

    def _hello_expired(self) -> None:
        if not self.helloed:
            log.info("closing %r: no hello within %gs", self, self.server.hello_timeout)
            self.finish(p.error(p.NO_ID, p.HELLO_REQUIRED, f"no hello within {self.server.hello_timeout:g}s"))

    def _idle_expired(self) -> None:
        """One timer per connection, re-armed for the rest of the timeout when bytes came meanwhile
        (cheaper than rearming on every message)."""
        if self.subscribed or self.closing:
            return
        silent = asyncio.get_running_loop().time() - self.heard
        if silent < self.server.idle_timeout:
            self.later("idle", self.server.idle_timeout - silent, self._idle_expired)
            return
        log.info("closing %r: idle for %gs", self, self.server.idle_timeout)
        self.close()

    def evict(self, silent: float) -> None:
        """Make room for a newcomer: say why, then close."""
        log.info("closing %r to admit a new client: silent for %.1fs and all %d places taken",
                 self, silent, self.server.max_clients)
        self.finish(p.error(p.NO_ID, p.BUSY,
                            f"closed after {silent:.0f}s without a request to make room for another client "
                            f"(logmond serves at most {self.server.max_clients}); reconnect when needed"))

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
        """Queue bytes without ever waiting; a client that lets them pile up is dropped.

        Nothing is written once the transport is closing: after the peer went away asyncio only
        counts such writes, and logs a warning for each past the fifth."""
        transport = self.transport
        if self.closing or transport is None:
            return
        if not transport.is_closing():
            transport.write(frame)
        if transport.is_closing():  # the peer is gone (found now or earlier): stop answering it
            self.closing = True
            return
        pending = transport.get_write_buffer_size()
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

    def later(self, purpose: str, delay: float, callback: Callable[[], None]) -> None:
        """Arm the timer for purpose, replacing the one armed before."""
        self.cancel(purpose)
        self.timers[purpose] = asyncio.get_running_loop().call_later(delay, callback)

    def cancel(self, purpose: str) -> None:
        timer = self.timers.pop(purpose, None)
        if timer is not None:
            timer.cancel()

    def finish(self, msg: p.Message) -> None:
        """Send a last message, then close; a peer that will not read it is aborted after a grace."""
        if self.closing or self.transport is None:
            return
        self.write(p.encode(msg))
        self.close()

    def close(self) -> None:
        transport = self.transport
        self.closing = True
        if transport is None or transport.is_closing():
            return
        transport.close()
        self.later("abort", CLOSE_GRACE, transport.abort)

    def drop(self, reason: str) -> None:
        log.warning("dropping %r: %s", self, reason)
        self.closing = True
        self.dropped = True
        self.snapshot = None
        self.alerts.clear()
        if self.transport is not None:
            self.transport.abort()


class Server:
    """The daemon's socket: serves up to max_clients connections, carries their requests to api
    and pushes snapshots and alerts to the subscribers among them."""

    def __init__(self, path: str, api: Api, *, hello_timeout: float = HELLO_TIMEOUT,
                 idle_timeout: float = IDLE_TIMEOUT, evict_after: float = EVICT_AFTER,
                 max_clients: int = MAX_CLIENTS) -> None:
        self.path = path
        self.api = api
        self.hello_timeout = hello_timeout
        self.idle_timeout = idle_timeout
        self.evict_after = evict_after
        self.max_clients = max_clients
        self.refused = 0   # connections told BUSY on arrival, since start
        self.lost = 0      # connections that ended abnormally (reset by the peer, dropped), since start
        self._conns: set[_Connection] = set()     # admitted clients
        self._leaving: set[_Connection] = set()   # told BUSY (refused or evicted), still flushing that
        self._next_refusal_warning = 0.0          # loop time before which refusals are not logged
        self._server: asyncio.AbstractServer | None = None
        self._lock_fd: int | None = None
        self._socket_id: tuple[int, int] | None = None
        self._seq = 0
        self._latest: bytes | None = None
        self._all_gone: asyncio.Future[None] | None = None

    @property
    def clients(self) -> int:
        """Connections currently served (one told BUSY is not counted)."""
        return len(self._conns)

    @property
    def seq(self) -> int:
        """Sequence number of the last published snapshot (0 before the first)."""
        return self._seq

    @property
    def latest(self) -> bytes | None:
        """The last published snapshot, encoded: what a new subscriber gets first."""
        return self._latest

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
            if self._conns or self._leaving:
                self._all_gone = asyncio.get_running_loop().create_future()
                for conn in [*self._conns, *self._leaving]:
                    conn.close()
                try:
                    await asyncio.wait_for(asyncio.shield(self._all_gone), CLOSE_GRACE)
                except TimeoutError:
                    for conn in [*self._conns, *self._leaving]:
                        conn.drop("still connected at shutdown")
                    await self._all_gone
            await self._server.wait_closed()
            self._server = None
            log.info("closed %s: since start, %d clients refused and %d lost (reset by the peer or dropped)",
                     self.path, self.refused, self.lost)
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

    def admit(self, conn: _Connection) -> bool:
        """Take conn if a place is free, or can be freed from the longest-silent non-subscriber;
        False (and conn is to be told BUSY) if not."""
        if len(self._conns) >= self.max_clients:
            now = asyncio.get_running_loop().time()
            idle = [c for c in self._conns
                    if not c.subscribed and not c.closing and now - c.heard >= self.evict_after]
            victim = min(idle, key=lambda c: c.heard, default=None)
            if victim is None:
                self._refuse(conn)
                return False
            self._conns.discard(victim)
            self._leaving.add(victim)
            victim.evict(now - victim.heard)
        self._conns.add(conn)
        return True

    def _refuse(self, conn: _Connection) -> None:
        """A warning now and then, not one per newcomer: a burst of connections would flood the log."""
        self._leaving.add(conn)
        self.refused += 1
        now = asyncio.get_running_loop().time()
        if now >= self._next_refusal_warning:
            self._next_refusal_warning = now + REFUSAL_WARNING_INTERVAL
            log.warning("refusing new clients: all %d places are taken (%d refused since start)",
                        self.max_clients, self.refused)

    def forget(self, conn: _Connection, lost: bool) -> None:
        """conn is closed; lost if it ended abnormally."""
        self._conns.discard(conn)
        self._leaving.discard(conn)
        if lost:
            self.lost += 1
        log.debug("%r gone, %d left", conn, len(self._conns))
        if not self._conns and not self._leaving and self._all_gone is not None and not self._all_gone.done():
            self._all_gone.set_result(None)

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
