"""The socket API over real Unix sockets: replies, hostile and idle clients, pushes, memory, start and stop.

The server runs in its own event loop thread; tests talk to it with shared.client.Client or raw
sockets, and run server-side code in that loop through Running.call().
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import socket
import stat
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import msgpack
import pytest

import logmond
from conftest import T0, csv_line
from logmond import server as srv
from logmond.core.monitor import Monitor
from logmond.core.settings import CoreConfig
from logmond.ops import DaemonState, Ops, shutdown_allowed
from logmond.server import AlreadyRunning, Server, peer_credentials
from shared import protocol as p
from shared.client import Client, DaemonUnreachable, PermissionDenied, ProtocolMismatch, connect_error, start_hint
from shared.paths import SERVICE_SOCKET
from shared.protocol import ApiError

WAIT = 5.0  # seconds any awaited condition may take before the test fails
BIG = "x" * (100 * 1024)  # a ~100 KiB snapshot payload


def wait_until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)



async def inline(work):
    """DaemonState.in_thread for tests: the work done at once."""
    return work()


class Owner:
    """A fake daemon behind the real ops: its status counts calls, and it adds an echo and a failing op."""

    def __init__(self) -> None:
        self.calls = 0
        self.shutdowns = threading.Event()
        self.release = threading.Event()
        monitor = Monitor(CoreConfig())
        self.ops = Ops(DaemonState(file="/var/log/access.log", started_at=time.time(), monitor=lambda: monitor,
                                   file_status=dict, clients=lambda: 0, tick_seconds=tuple,
                                   history=lambda since, until: ([], []), in_thread=inline, events=lambda after, limit: None,
                                   stop=self.shutdowns.set, notify=dict))

    def call(self, op: str, args: dict[str, Any], peer_uid: int | None) -> dict[str, Any]:
        if op == "status":
            self.calls += 1
            return {"calls": self.calls}
        if op == "echo":
            return {"args": args}
        if op == "boom":
            raise RuntimeError("secret detail")
        if op == "slow":
            return self._slow(args)
        return self.ops.call(op, args, peer_uid)

    async def _slow(self, args: dict[str, Any]) -> dict[str, Any]:
        """An op answered off the loop, once the test sets `release`."""
        await asyncio.get_running_loop().run_in_executor(None, self.release.wait)
        if args.get("fail"):
            raise RuntimeError("secret detail")
        return {"slow": True}

    def hello_info(self) -> dict[str, Any]:
        return self.ops.hello_info()


class Running:
    """A started Server in an event loop on its own thread."""

    def __init__(self, path: str, owner: Owner, **options: Any) -> None:
        self.path = path
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="logmond-loop", daemon=True)
        self.thread.start()
        self.server = Server(path, owner, **options)
        self.closed = False
        try:
            self.run(self.server.start())
        except BaseException:
            self._stop_loop()
            raise

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        async def go() -> Any:
            return fn(*args)
        return self.run(go())

    def subscribers(self) -> list[Any]:
        return self.call(lambda: [c for c in self.server._conns if c.subscribed])

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.run(self.server.close())
            self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


@pytest.fixture
def sockdir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="lm", dir="/tmp")
    yield path
    shutil.rmtree(path)


@pytest.fixture
def owner() -> Owner:
    return Owner()


@pytest.fixture
def start(sockdir: str, owner: Owner) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(path: str | None = None, **options: Any) -> Running:
        running = Running(path or os.path.join(sockdir, "s"), owner, **options)
        started.append(running)
        return running
    yield start
    for running in reversed(started):
        running.close()


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


class Good:
    """A well-behaved client beside the hostile one; check() asserts exact, correct replies."""

    def __init__(self, running: Running, client: Client) -> None:
        self.running = running
        self.path = running.path
        self.client = client
        self.expected = 0

    def check(self) -> None:
        self.expected += 1
        assert self.client.call("status") == {"calls": self.expected}
        assert self.client.call("ping") == {"pong": True}


@pytest.fixture
def good(start: Callable[..., Running], stack: ExitStack, request: pytest.FixtureRequest) -> Iterator[Good]:
    options = getattr(request, "param", {})
    running = start(**options)
    good = Good(running, stack.enter_context(Client(running.path)))
    good.check()
    yield good
    good.check()


def raw(path: str, stack: ExitStack) -> socket.socket:
    sock = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
    sock.settimeout(WAIT)
    sock.connect(path)
    return sock


def hello(id: int = 1, protocol: int = p.PROTOCOL) -> bytes:
    return p.encode(p.request("hello", id, protocol=protocol, client="test"))


class Reader:
    """Decodes what a raw socket receives."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.unpacker = msgpack.Unpacker(raw=False, max_buffer_size=8 * p.MAX_MESSAGE)

    def read(self, n: int) -> list[Any]:
        got: list[Any] = []
        while len(got) < n:
            got.extend(self.unpacker)
            if len(got) >= n:
                break
            data = self.sock.recv(1 << 16)
            assert data, f"connection closed after {got}"
            self.unpacker.feed(data)
        return got

    def until_closed(self) -> list[Any]:
        """Everything up to EOF (or reset: the server closed with our bytes unread)."""
        got: list[Any] = []
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except ConnectionResetError:
                data = b""
            if not data:
                return got + list(self.unpacker)
            self.unpacker.feed(data)
            got.extend(self.unpacker)


def code_of(msg: dict[str, Any]) -> str:
    assert msg["ok"] is False, msg
    return msg["error"]["code"]


# 1. Round trips


def test_hello_ping_and_owner_ops_round_trip(start: Callable[..., Running], owner: Owner) -> None:
    running = start()
    with Client(running.path, name="t") as client:
        assert client.server_info == {"protocol": 1, "version": logmond.__version__, "pid": os.getpid(),
                                      "file": "/var/log/access.log"}
        assert client.call("ping") == {"pong": True}
        assert client.call("status") == {"calls": 1}
        assert client.call("status") == {"calls": 2}
        assert client.call("echo", x=[1, "a"], b=b"\x00") == {"args": {"x": [1, "a"], "b": b"\x00"}}
        with pytest.raises(ApiError) as info:
            client.call("frobnicate")
        assert info.value.code == p.UNKNOWN_OP
        with pytest.raises(ApiError) as info:
            client.call("boom")
        assert info.value.code == p.INTERNAL
        assert "secret" not in info.value.message and "Traceback" not in info.value.message
        assert client.call("status") == {"calls": 3}


def test_ids_are_echoed(start: Callable[..., Running], stack: ExitStack) -> None:
    sock = raw(start().path, stack)
    sock.sendall(hello(7) + p.encode(p.request("ping", 42)) + p.encode(p.request("nope", -3)))
    first, second, third = Reader(sock).read(3)
    assert (first["id"], first["ok"], first["result"]["protocol"]) == (7, True, 1)
    assert second == {"id": 42, "ok": True, "result": {"pong": True}}
    assert (third["id"], code_of(third)) == (-3, p.UNKNOWN_OP)


def test_op_before_hello_is_refused_until_hello(start: Callable[..., Running], stack: ExitStack) -> None:
    sock = raw(start().path, stack)
    reader = Reader(sock)
    sock.sendall(p.encode(p.request("status", 3)))
    [refused] = reader.read(1)
    assert (refused["id"], code_of(refused)) == (3, p.HELLO_REQUIRED)
    sock.sendall(hello(4) + p.encode(p.request("status", 5)))
    assert [m["ok"] for m in reader.read(2)] == [True, True]


def test_other_protocol_version_is_refused_clearly(start: Callable[..., Running], stack: ExitStack,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    running = start()
    sock = raw(running.path, stack)
    sock.sendall(hello(1, protocol=2) + p.encode(p.request("ping", 2)))
    [refused] = Reader(sock).until_closed()  # the ping after it is never answered
    assert code_of(refused) == p.PROTOCOL_ERROR
    assert "protocol 2" in refused["error"]["message"] and "protocol 1" in refused["error"]["message"]

    monkeypatch.setattr(Client, "protocol", 2)
    with pytest.raises(ProtocolMismatch, match=f"{running.path}.*protocol 2.*protocol 1"):
        Client(running.path).connect()
    wait_until(lambda: running.call(lambda: running.server.clients) == 0, "both refused clients to be gone")


# 2. Hostile clients, each while a well-behaved client keeps getting correct replies


@pytest.mark.parametrize("garbage", [b"\xc1", b"\x93\x01\xc1", p.encode({"op": "ping", "id": 1})[:-1] + b"\xc1",
                                     msgpack.packb({1: 2})], ids=["reserved-byte", "in-array", "in-map", "int-key"])
def test_malformed_msgpack_gets_an_error_then_close(good: Good, stack: ExitStack, garbage: bytes) -> None:
    sock = raw(good.path, stack)
    sock.sendall(hello() + garbage + p.encode(p.request("ping", 2)))
    welcome, refused = Reader(sock).until_closed()
    assert welcome["ok"] is True
    assert (refused["id"], code_of(refused)) == (p.NO_ID, p.BAD_REQUEST)
    assert "malformed" in refused["error"]["message"]
    good.check()


def send_regardless(sock: socket.socket, data: bytes) -> None:
    """The server closes while we still send: that is the point."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


@pytest.mark.parametrize("message", [
    p.encode(p.request("echo", 5, pad="x" * (2 << 20))),
    p.encode(p.request("echo", 5, pad=list(range(1 << 16, (1 << 16) + 450_000)))),
    b"\xdd\xff\xff\xff\xff",  # an array header announcing 4 G elements, refused before allocation
    # Under the 1 MiB frame limit but over the request limit: 20 KiB of empty maps would cost
    # about 1.5 MB of dicts to decode.
    p.encode(p.request("echo", 5, pad=[{}] * (20 << 10))),
], ids=["2MiB-string", "2MiB-array", "4G-array-header", "20KiB-of-empty-maps"])
def test_oversized_message_is_refused_then_closed(good: Good, stack: ExitStack, message: bytes) -> None:
    sock = raw(good.path, stack)
    sender = threading.Thread(target=send_regardless, args=(sock, message))
    sender.start()
    messages = Reader(sock).until_closed()
    sender.join(WAIT)
    assert [(m["id"], code_of(m)) for m in messages] == [(p.NO_ID, p.TOO_LARGE)]
    good.check()


def test_ill_formed_requests_get_bad_request_and_the_connection_stays(good: Good, stack: ExitStack) -> None:
    sock = raw(good.path, stack)
    bad = [[1, 2], "ping", 7, {"op": "ping"}, {"op": "ping", "id": True}, {"op": "ping", "id": "1"},
           {"op": 5, "id": 9}, {"id": 10}, {"op": "hello", "id": 11, "protocol": "1"}]
    sock.sendall(b"".join(p.encode(m) for m in bad) + hello(12) + p.encode(p.request("ping", 13)))
    replies = Reader(sock).read(len(bad) + 2)
    assert [(r["id"], code_of(r)) for r in replies[:len(bad)]] == (
        [(p.NO_ID, p.BAD_REQUEST)] * 6 + [(9, p.BAD_REQUEST), (10, p.BAD_REQUEST), (11, p.BAD_REQUEST)])
    assert replies[-1] == {"id": 13, "ok": True, "result": {"pong": True}}
    good.check()


@pytest.mark.parametrize("good", [{"hello_timeout": 0.3}], indirect=True)
def test_silent_client_is_closed_after_the_hello_timeout(good: Good, stack: ExitStack) -> None:
    sock = raw(good.path, stack)
    began = time.monotonic()
    messages = Reader(sock).until_closed()
    elapsed = time.monotonic() - began
    assert [(m["id"], code_of(m)) for m in messages] == [(p.NO_ID, p.HELLO_REQUIRED)]
    assert 0.25 <= elapsed < WAIT
    good.check()  # said hello in time, so still served well after the timeout


def subscribe_raw(path: str, stack: ExitStack) -> tuple[socket.socket, Reader]:
    sock = raw(path, stack)
    sock.sendall(hello() + p.encode(p.request("subscribe", 2)))
    reader = Reader(sock)
    assert [m["ok"] for m in reader.read(2)] == [True, True]
    return sock, reader


def test_subscriber_that_never_reads_is_dropped_with_bounded_buffers(good: Good, stack: ExitStack) -> None:
    running = good.running
    _, reader = subscribe_raw(good.path, stack)
    [stuck] = running.subscribers()

    async def flood() -> tuple[int, int, int]:
        published = most = size = 0
        while stuck in running.server._conns and published < 10 * srv.MAX_STALLED_SNAPSHOTS:
            running.server.publish_snapshot({"n": published, "pad": BIG})
            published += 1
            size = len(running.server._latest)
            if stuck.transport is not None and not stuck.transport.is_closing():
                most = max(most, stuck.transport.get_write_buffer_size())
            await asyncio.sleep(0)  # let the transport write what the socket takes
        return published, most, size

    published, most, size = running.run(flood())
    wait_until(lambda: running.call(lambda: running.server.clients) == 1, "the stuck subscriber to be dropped")
    assert published <= srv.MAX_STALLED_SNAPSHOTS + 10  # dropped soon, not after the flood ended
    assert 0 < most <= size  # conflated: never more than one snapshot waiting in user space
    seqs = [m["seq"] for m in reader.until_closed()]
    assert seqs == sorted(set(seqs)) and len(seqs) < published
    good.check()


def test_subscriber_that_never_reads_is_dropped_past_the_alert_bound(good: Good, stack: ExitStack) -> None:
    running = good.running
    subscribe_raw(good.path, stack)
    [stuck] = running.subscribers()

    async def fill() -> tuple[bool, int]:
        while not stuck.paused:  # make the socket stop taking bytes
            running.server.publish_snapshot({"pad": BIG})
            await asyncio.sleep(0)
        for n in range(srv.MAX_QUEUED_ALERTS):
            running.server.publish_alert({"type": "alert", "n": n})
        held = stuck in running.server._conns and len(stuck.alerts) == srv.MAX_QUEUED_ALERTS
        running.server.publish_alert({"type": "alert", "n": -1})
        return held, len(stuck.alerts)

    held, left = running.run(fill())
    assert held  # every alert kept up to the bound...
    assert left == 0  # ...and past it the client is dropped, its queue freed
    wait_until(lambda: running.call(lambda: running.server.clients) == 1, "the stuck subscriber to be dropped")
    good.check()


def test_client_that_never_reads_its_replies_is_dropped(good: Good, stack: ExitStack) -> None:
    sock = raw(good.path, stack)
    request = p.encode(p.request("echo", 2, pad=BIG))
    sender = threading.Thread(target=send_regardless, args=(sock, hello() + request * 200))  # 20 MiB of replies
    sender.start()
    wait_until(lambda: good.running.call(lambda: good.running.server.clients) == 1, "the non-reader to be dropped")
    sender.join(WAIT)
    assert not sender.is_alive()
    good.check()


# The good client counts as active however long the setup takes: no place is freed by eviction.
@pytest.mark.parametrize("good", [{"evict_after": 100 * WAIT}], indirect=True)
def test_client_past_max_clients_is_told_busy(good: Good, stack: ExitStack) -> None:
    running = good.running
    others = [stack.enter_context(Client(good.path)) for _ in range(srv.MAX_CLIENTS - 1)]
    for other in others:
        assert other.call("subscribe") == {"seq": 0}
    assert running.call(lambda: running.server.clients) == srv.MAX_CLIENTS
    with pytest.raises(ApiError) as info:
        Client(good.path).connect()
    assert info.value.code == p.BUSY and str(srv.MAX_CLIENTS) in info.value.message
    messages = Reader(raw(good.path, stack)).until_closed()
    assert [(m["id"], code_of(m)) for m in messages] == [(p.NO_ID, p.BUSY)]
    good.check()
    assert others[-1].call("ping") == {"pong": True}
    others.pop().close()
    wait_until(lambda: running.call(lambda: running.server.clients) == srv.MAX_CLIENTS - 1, "a slot to free up")
    with Client(good.path) as late:
        assert late.call("ping") == {"pong": True}


def helloed(path: str, stack: ExitStack) -> tuple[socket.socket, Reader]:
    sock = raw(path, stack)
    sock.sendall(hello())
    reader = Reader(sock)
    assert reader.read(1)[0]["ok"] is True
    return sock, reader


IDLE = 0.2  # a short idle timeout for the tests of it


def test_idle_client_is_closed_after_the_idle_timeout_but_a_subscriber_is_not(
        start: Callable[..., Running], stack: ExitStack) -> None:
    running = start(idle_timeout=IDLE)
    _, idle = helloed(running.path, stack)
    began = time.monotonic()
    _, pushes = subscribe_raw(running.path, stack)
    assert idle.until_closed() == []
    assert IDLE * 0.75 <= time.monotonic() - began < WAIT
    # The timeout counts from the last request, not from hello: a client that keeps asking stays.
    asking, answers = helloed(running.path, stack)
    since, n = time.monotonic(), 0
    while time.monotonic() - since < 2 * IDLE:
        n += 1
        asking.sendall(p.encode(p.request("ping", n)))
        assert answers.read(1) == [{"id": n, "ok": True, "result": {"pong": True}}]
        time.sleep(IDLE / 4)  # the pace of the client under test, not a wait for the server
    # Subscribed more than three timeouts ago, and still served.
    running.call(running.server.publish_snapshot, {"n": 1})
    assert pushes.read(1) == [{"event": "snapshot", "seq": 1, "data": {"n": 1}}]
    assert running.call(lambda: running.server.clients) == 2


def test_full_table_of_idle_clients_makes_room_by_closing_the_longest_silent(
        start: Callable[..., Running], owner: Owner, stack: ExitStack) -> None:
    running = start(evict_after=0)
    idle = [helloed(running.path, stack) for _ in range(srv.MAX_CLIENTS)]
    assert running.call(lambda: running.server.clients) == srv.MAX_CLIENTS
    first, first_reader = idle[0]
    first.sendall(p.encode(p.request("ping", 2)))  # now idle[1] has been silent the longest
    assert first_reader.read(1)[0]["result"] == {"pong": True}
    with Client(running.path) as newcomer:
        assert newcomer.call("status") == {"calls": 1}
        [evicted] = idle[1][1].until_closed()
        assert (evicted["id"], code_of(evicted)) == (p.NO_ID, p.BUSY)
        assert running.call(lambda: running.server.clients) == srv.MAX_CLIENTS
        for sock, reader in (idle[0], idle[2], idle[-1]):
            sock.sendall(p.encode(p.request("ping", 3)))
            assert reader.read(1)[0] == {"id": 3, "ok": True, "result": {"pong": True}}


def test_full_table_of_subscribers_or_recent_clients_still_answers_busy(
        start: Callable[..., Running], sockdir: str, stack: ExitStack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=srv.__name__)
    subscribers = start(os.path.join(sockdir, "subscribers"), evict_after=0, max_clients=3)
    for _ in range(3):
        subscribe_raw(subscribers.path, stack)
    recent = start(os.path.join(sockdir, "recent"), evict_after=100 * WAIT, max_clients=2)
    for _ in range(2):
        helloed(recent.path, stack)
    for running in (subscribers, recent, subscribers):
        with pytest.raises(ApiError) as info:
            Client(running.path).connect()
        assert info.value.code == p.BUSY
    assert (subscribers.call(lambda: subscribers.server.refused), recent.call(lambda: recent.server.refused)) == (2, 1)
    # One warning per server, not one per refused client.
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["refusing new clients"] * 2


def test_closed_connections_are_freed_without_the_garbage_collector(
        start: Callable[..., Running], stack: ExitStack) -> None:
    """The daemon runs the collector rarely: anything a closed connection keeps in a reference cycle
    (it, its transport, timers, bound methods) would pile up with connection churn."""
    running = start()
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        plain = stack.enter_context(Client(running.path))
        assert plain.call("ping") == {"pong": True}
        reset, _ = helloed(running.path, stack)
        reset.sendall(p.encode(p.request("ping", 2)))
        # Close with the pong unread: the server sees the connection reset.
        assert reset.recv(64, socket.MSG_PEEK), "the pong arrived"
        reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        refs = running.call(lambda: [(weakref.ref(c), weakref.ref(c.transport)) for c in running.server._conns])
        assert len(refs) == 2
        plain.close()
        reset.close()
        wait_until(lambda: running.call(lambda: running.server.clients) == 0, "both connections to end")
        assert [(conn(), transport()) for conn, transport in refs] == [(None, None), (None, None)]
        assert running.call(lambda: running.server.lost) == 1
    finally:
        if enabled:
            gc.enable()


def test_a_vanished_peer_is_not_written_to(start: Callable[..., Running], stack: ExitStack,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """asyncio counts writes to a transport whose peer is gone and logs a warning for each past the
    fifth; a client that sends many requests and leaves must cost no log line per reply."""
    caplog.set_level(logging.WARNING)
    running = start()
    sock = raw(running.path, stack)
    wait_until(lambda: running.call(lambda: running.server.clients) == 1, "the connection to be accepted")
    gate = threading.Event()
    running.loop.call_soon_threadsafe(gate.wait, WAIT)  # hold the loop until the client is gone
    sock.sendall(hello() + b"".join(p.encode(p.request("ping", n)) for n in range(2, 30)))
    sock.close()
    gate.set()
    wait_until(lambda: running.call(lambda: running.server.clients) == 0, "the connection to end")
    assert [r.getMessage() for r in caplog.records] == []
    assert running.call(lambda: running.server.lost) == 1


# 3. Pushes


def test_subscribe_replies_first_then_pushes_the_latest_and_every_new_snapshot(
        start: Callable[..., Running], stack: ExitStack) -> None:
    running = start()
    running.call(running.server.publish_snapshot, {"n": 1})
    sock = raw(running.path, stack)
    sock.sendall(hello() + p.encode(p.request("subscribe", 2)))
    reader = Reader(sock)
    _, subscribed, latest = reader.read(3)
    assert subscribed == {"id": 2, "ok": True, "result": {"seq": 1}}
    assert latest == {"event": "snapshot", "seq": 1, "data": {"n": 1}}
    for n in range(2, 12):  # a reader that keeps up sees every one
        running.call(running.server.publish_snapshot, {"n": n})
        assert reader.read(1) == [{"event": "snapshot", "seq": n, "data": {"n": n}}]
    running.call(running.server.publish_alert, {"type": "alert", "hits": 5})
    assert reader.read(1) == [{"event": "alert", "type": "alert", "hits": 5}]


def test_slow_subscriber_sees_newest_snapshots_with_gaps_and_every_alert_in_order(
        start: Callable[..., Running], stack: ExitStack) -> None:
    running = start()
    client = stack.enter_context(Client(running.path))
    pushes = client.subscribe(timeout=WAIT)
    count = 20

    async def publish() -> None:  # faster than the client reads: it is not reading at all yet
        for n in range(1, count + 1):
            running.server.publish_snapshot({"n": n, "pad": BIG})
            if n % 4 == 0:
                running.server.publish_alert({"type": "alert", "n": n // 4})
            await asyncio.sleep(0)
    running.run(publish())

    seqs: list[int] = []
    alerts: list[int] = []
    for push in pushes:
        if push["event"] == "alert":
            alerts.append(push["n"])
        else:
            assert push["data"]["n"] == push["seq"]
            seqs.append(push["seq"])
        if seqs and seqs[-1] == count and len(alerts) == count // 4:
            break
    assert alerts == [1, 2, 3, 4, 5]
    assert seqs == sorted(set(seqs)) and seqs[-1] == count  # in order, ending with the newest
    assert len(seqs) < count // 2  # conflated: no backlog of stale snapshots
    assert client.call("ping") == {"pong": True}


# 4. Shutdown


def test_shutdown_by_own_uid_replies_then_calls_back(start: Callable[..., Running], owner: Owner) -> None:
    running = start()
    with Client(running.path) as client:
        assert client.call("shutdown") == {}
    assert owner.shutdowns.wait(WAIT)


def test_shutdown_by_another_uid_is_refused(start: Callable[..., Running], owner: Owner,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(srv, "peer_credentials", lambda sock: (1, 4242, 4242))
    running = start()
    with Client(running.path) as client:
        with pytest.raises(ApiError) as info:
            client.call("shutdown")
        assert info.value.code == p.PERMISSION
        assert client.call("ping") == {"pong": True}  # any callback would have run by now
    assert not owner.shutdowns.is_set()


def test_shutdown_permission_check() -> None:
    assert shutdown_allowed(0)
    assert shutdown_allowed(os.geteuid())
    assert not shutdown_allowed(os.geteuid() + 4242)
    assert not shutdown_allowed(None)
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        assert peer_credentials(a) == (os.getpid(), os.getuid(), os.getgid())


def test_ops_read_the_daemon_state_at_each_call() -> None:
    """The daemon replaces its monitor on reload and its source on reopen: ops must not keep old ones."""
    current = {"monitor": Monitor(CoreConfig()), "clients": 3, "ticks": [0.002]}
    stops: list[bool] = []
    ops = Ops(DaemonState(file="/var/log/access.log", started_at=1000.0, monitor=lambda: current["monitor"],
                          file_status=lambda: {"path": "/var/log/access.log", "offset": 7},
                          clients=lambda: current["clients"], tick_seconds=lambda: current["ticks"],
                          history=lambda since, until: ([], []), in_thread=inline, events=lambda after, limit: None,
                          stop=lambda: stops.append(True), notify=dict))
    assert ops.hello_info() == {"file": "/var/log/access.log"}
    st = ops.call("status", {}, os.geteuid())
    assert (st["lines"], st["clients"], st["file"], st["started_at"]) == (0, 3, {"path": "/var/log/access.log",
                                                                               "offset": 7}, 1000.0)
    assert st["pid"] == os.getpid() and st["process"]["rss_bytes"] > 1_000_000
    assert st["tick"] == {"count": 1, "p50_ms": 2.0, "p99_ms": 2.0, "max_ms": 2.0}
    replaced = Monitor(CoreConfig())
    replaced.feed(csv_line(T0).encode() + csv_line(T0, 1).encode())
    current.update(monitor=replaced, clients=4, ticks=[0.002, 0.004])
    st = ops.call("status", {}, None)
    assert (st["lines"], st["clients"], st["tick"]["count"]) == (2, 4, 2)
    assert ops.tick()["status"]["lines"] == 2
    assert ops.call("alerts", {"since": 0}, None) == {"events": [], "more": False}
    for bad in ("1", True, 1.5):
        with pytest.raises(ApiError) as info:
            ops.call("alerts", {"since": bad}, None)
        assert info.value.code == p.BAD_REQUEST
    for uid in (None, os.geteuid() + 4242):
        with pytest.raises(ApiError) as info:
            ops.call("shutdown", {}, uid)
        assert info.value.code == p.PERMISSION
    assert stops == []
    assert ops.call("shutdown", {}, os.geteuid()) == {} and stops == [True]
    with pytest.raises(ApiError) as info:
        ops.call("frobnicate", {}, 0)
    assert info.value.code == p.UNKNOWN_OP and "frobnicate" in info.value.message


# 5. Start and stop


def test_socket_is_0660_and_removed_with_its_lock_on_close(start: Callable[..., Running]) -> None:
    running = start()
    st = os.stat(running.path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    with open(running.path + ".lock") as lock:
        assert lock.read() == f"{os.getpid()}\n"
    assert not os.path.exists(running.path + ".tmp")
    running.close()
    assert not os.path.exists(running.path)
    assert not os.path.exists(running.path + ".lock")


def test_second_server_on_the_same_path_is_refused(start: Callable[..., Running], owner: Owner) -> None:
    first = start()
    with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}"):
        Running(first.path, owner)
    with Client(first.path) as client:  # the first one still owns its path
        assert client.call("ping") == {"pong": True}


def test_live_socket_without_a_lock_is_not_stolen(sockdir: str, owner: Owner, stack: ExitStack) -> None:
    path = os.path.join(sockdir, "s")
    other = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
    other.bind(path)
    other.listen()
    with pytest.raises(AlreadyRunning, match=path):
        Running(path, owner)
    raw(path, stack)  # still the other listener's
    assert not os.path.exists(path + ".lock")


def test_stale_socket_file_is_replaced(sockdir: str, start: Callable[..., Running]) -> None:
    path = os.path.join(sockdir, "s")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(path)
        dead.listen()
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    running = start(path)
    with Client(running.path) as client:
        assert client.call("ping") == {"pong": True}


def test_missing_directory_is_created_and_impossible_paths_raise_oserror(
        sockdir: str, start: Callable[..., Running], owner: Owner) -> None:
    running = start(os.path.join(sockdir, "run", "logmond", "s"))
    assert stat.S_IMODE(os.stat(os.path.dirname(running.path)).st_mode) == 0o755
    blocker = os.path.join(sockdir, "file")
    with open(blocker, "w"):
        pass
    with pytest.raises(OSError):
        Running(os.path.join(blocker, "s"), owner)
    with pytest.raises(FileExistsError, match="not a socket"):
        Running(blocker, owner)
    assert not os.path.exists(blocker + ".lock")
    with pytest.raises(OSError, match="longer than"):
        Running(os.path.join(sockdir, "x" * 120), owner)


# 6. Client errors


def test_client_errors_name_the_socket_and_what_to_do(sockdir: str, stack: ExitStack,
                                                      start: Callable[..., Running]) -> None:
    path = os.path.join(sockdir, "s")
    with pytest.raises(DaemonUnreachable) as missing:
        Client(path).connect()
    # A socket named by hand: systemctl would start a logmond that listens elsewhere.
    assert str(missing.value) == f"no logmond socket at {path}: is a logmond running with --socket {path}?"

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(path)
    with pytest.raises(DaemonUnreachable, match=f"nothing listens on {path}"):
        Client(path).connect()
    os.unlink(path)

    mute = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
    mute.bind(path)
    mute.listen()  # accepts into the backlog, never answers
    with pytest.raises(DaemonUnreachable) as mute_error:
        Client(path, timeout=0.2).connect()
    assert str(mute_error.value) == f"no answer from logmond on {path} within 0.2s: it may be hung"
    mute.close()
    os.unlink(path)

    error = connect_error(path, PermissionError(13, "Permission denied"))
    assert isinstance(error, PermissionDenied) and path in str(error)
    service = connect_error(SERVICE_SOCKET, FileNotFoundError(2, "No such file or directory"))
    assert str(service) == f"no logmond socket at {SERVICE_SOCKET}: is logmond running? start it with " \
                           "`systemctl start logmond`"
    assert str(connect_error(SERVICE_SOCKET, TimeoutError(), 5.0)) == \
        f"logmond did not accept a connection on {SERVICE_SOCKET} within 5.0s: it may be hung; " \
        "check `systemctl status logmond`"

    running = start(path)
    client = stack.enter_context(Client(path))
    running.close()
    with pytest.raises(DaemonUnreachable, match=path):
        client.call("ping")


def test_only_the_services_socket_is_told_to_try_systemctl() -> None:
    user = {"XDG_RUNTIME_DIR": "/run/user/1000"}
    own = "/run/user/1000/logmond.sock"
    systemctl = "is logmond running? start it with `systemctl start logmond`"
    assert start_hint(SERVICE_SOCKET, {}, 0) == systemctl  # root's default
    assert start_hint(SERVICE_SOCKET, {**user, "LOGMOND_SOCKET": SERVICE_SOCKET}, 1000) == systemctl
    # A user's own default: the service listens elsewhere, which is what they need to hear.
    assert start_hint(own, user, 1000) == start_hint(own, {**user, "LOGMOND_SOCKET": own}, 1000) == (
        f"is logmond running? the service listens on {SERVICE_SOCKET} (give --socket or set LOGMOND_SOCKET), "
        "or start your own with `logmond --file LOG`")
    assert start_hint("/tmp/x/s.sock", user, 1000) == "is a logmond running with --socket /tmp/x/s.sock?"
    assert start_hint("/tmp/logmond-1000/logmond.sock", {}, 1000).startswith("is logmond running? the service")


def test_alerts_come_from_the_state_database_a_page_at_a_time(monkeypatch):
    kept = [{"id": i, "type": "alert", "at": i} for i in range(1, 12)]
    ops = Ops(DaemonState(file="/var/log/access.log", started_at=1000.0, monitor=lambda: Monitor(CoreConfig()),
                          file_status=dict, clients=lambda: 0, tick_seconds=tuple,
                          history=lambda since, until: ([], []), in_thread=inline,
                          events=lambda after, limit: [e for e in kept if e["id"] > after][:limit], stop=lambda: None,
                          notify=dict))
    monkeypatch.setattr("logmond.ops.ALERTS_PAGE", 4)
    pages, since = [], 0
    while True:
        page = ops.call("alerts", {"since": since}, None)
        pages.append([e["id"] for e in page["events"]])
        if not page["more"]:
            break
        since = page["events"][-1]["id"]
    assert pages == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11]]


def test_a_request_answered_off_the_loop_holds_nothing_else_up(start: Callable[..., Running], stack: ExitStack) -> None:
    running = start()
    owner = running.server.api
    slow = raw(running.path, stack)
    reader = Reader(slow)
    slow.sendall(hello(1) + p.encode(p.request("slow", 2)) + p.encode(p.request("ping", 3)))
    first, busy = reader.read(2)
    assert first["id"] == 1 and (busy["id"], code_of(busy)) == (3, p.BUSY), "one such request at a time"
    with Client(running.path, timeout=WAIT) as other:
        assert other.call("ping") == {"pong": True}, "the loop answers others meanwhile"
    owner.release.set()
    [done] = reader.read(1)
    assert done == {"id": 2, "ok": True, "result": {"slow": True}}
    slow.sendall(p.encode(p.request("slow", 4, fail=True)))
    [failed] = reader.read(1)
    assert (failed["id"], code_of(failed)) == (4, p.INTERNAL) and "secret" not in str(failed)
    slow.sendall(p.encode(p.request("ping", 5)))
    assert reader.read(1) == [{"id": 5, "ok": True, "result": {"pong": True}}], "free again after a failure"
