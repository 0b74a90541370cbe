"""The socket API of a real logmond: replies, pushes, and hostile clients that must hurt neither the
daemon nor the other clients while a writer keeps appending to the log.
"""
from __future__ import annotations

import os
import socket
import struct
import threading
import time
from typing import Iterator

import msgpack
import pytest

from conftest import T0, Logmond, Writer, csv_line, wait_for
from shared import protocol as p
from shared.client import Client, ClientError
from shared.protocol import ApiError

LIVE = ("--lateness", "30", "--threshold", "1000000")

STATUS_KEYS = {"version", "protocol", "pid", "started_at", "uptime", "file", "format", "format_spec", "format_error",
               "lines", "parsed", "malformed", "late", "recent", "clock", "rate", "threshold", "window", "alert",
               "rules", "process", "clients", "tick", "notify"}
FILE_KEYS = {"path", "device", "inode", "offset", "size"}
ALERT_KEYS = {"active", "since", "hits", "rate"}
PROCESS_KEYS = {"rss_bytes", "cpu_percent", "open_fds"}
TICK_KEYS = {"count", "p50_ms", "p99_ms", "max_ms"}
EVENT_KEYS = {"id", "type", "at", "hits", "rate", "threshold", "window", "rule", "severity", "metric", "value"}


# -- helpers ----------------------------------------------------------------------------------

class Watcher(threading.Thread):
    """The well-behaved second client: one connection asking for `status` all along."""

    def __init__(self, d: Logmond) -> None:
        super().__init__(daemon=True)
        self.client = Client(d.socket, timeout=5, name="watcher")
        self.client.connect()
        self.replies: list[tuple[float, dict]] = []
        self.errors: list[BaseException] = []
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                st = self.client.call("status")
                self.replies.append((time.monotonic(), st))
                time.sleep(0.05)
        except BaseException as exc:  # recorded, asserted on by the test
            self.errors.append(exc)

    def lines(self) -> int:
        return self.replies[-1][1]["lines"] if self.replies else -1

    def assert_counting(self) -> None:
        """Right now: the watcher is served and the line count is still growing."""
        assert not self.errors, self.errors
        n = len(self.replies)
        before = self.lines()
        wait_for(lambda: self.errors or (len(self.replies) > n + 3 and self.lines() > before), 10,
                 "the watcher to see lines grow")
        assert not self.errors, self.errors

    def finish(self) -> None:
        self.halt.set()
        self.join(timeout=10)
        self.client.close()
        assert not self.errors, self.errors
        times = [t for t, _ in self.replies]
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert max(gaps, default=0) < 3.0, f"the watcher waited {max(gaps):.2f}s for a status reply"
        lines = [st["lines"] for _, st in self.replies]
        assert lines == sorted(lines) and lines[-1] > lines[0]
        for _, st in self.replies:
            assert set(st) == STATUS_KEYS


class Live:
    def __init__(self, d: Logmond, writer: Writer, watcher: Watcher) -> None:
        self.d, self.writer, self.watcher = d, writer, watcher


@pytest.fixture
def live(logmond, short_tmp) -> Iterator[Live]:
    """logmond following a log a writer appends to, and a watcher client asking for status."""
    log = short_tmp / "access.log"
    log.write_text("")
    d = logmond(*LIVE).start()
    writer = Writer(log, rate=200)
    writer.start()
    d.wait_lines(20)
    watcher = Watcher(d)
    watcher.start()
    try:
        yield Live(d, writer, watcher)
        watcher.finish()
    finally:
        watcher.halt.set()
        written = writer.stop()
    d.wait_lines(written)
    st = d.status()
    assert (st["lines"], st["parsed"], st["malformed"]) == (written, written, 0)
    assert d.proc.poll() is None
    assert "Traceback" not in d.stderr()


_OPENED: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_raw_sockets() -> Iterator[None]:
    """Whatever a test does or fails on, its raw sockets are closed at its end."""
    yield
    while _OPENED:
        _OPENED.pop().close()


def raw(path: str, hello: bool = True) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    _OPENED.append(s)
    s.settimeout(10)
    s.connect(path)
    if hello:
        s.sendall(p.encode(p.request("hello", 1, protocol=p.PROTOCOL, client="raw")))
        reply = next(messages(s))
        assert reply["ok"] is True and reply["id"] == 1, reply
    return s


def messages(s: socket.socket) -> Iterator[dict]:
    """Messages from s until it is closed (StopIteration); socket.timeout propagates."""
    unpacker = msgpack.Unpacker(raw=False)
    while True:
        for msg in unpacker:
            yield msg
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            return
        if not data:
            return
        unpacker.feed(data)


def until_closed(s: socket.socket, timeout: float = 10) -> list[dict]:
    """Every message the daemon sends before it closes the connection (fail if it does not)."""
    s.settimeout(timeout)
    try:
        return list(messages(s))
    except TimeoutError:
        raise AssertionError(f"logmond kept the connection open for {timeout}s") from None


def error_code(msg: dict) -> str:
    assert msg["ok"] is False, msg
    assert set(msg["error"]) == {"code", "message"} and msg["error"]["message"], msg
    return msg["error"]["code"]


# -- status, stats, alerts --------------------------------------------------------------------

def test_status_has_exactly_the_contract_keys(logmond, short_tmp):
    log = short_tmp / "access.log"
    now = int(time.time())
    log.write_text("".join(csv_line(now, i) for i in range(7)))
    d = logmond("--from-start", "--lateness", "30", "--threshold", "2.5", "--alert-window", "30").start()
    st = d.wait_lines(7)
    assert set(st) == STATUS_KEYS
    assert set(st["file"]) == FILE_KEYS
    assert set(st["alert"]) == ALERT_KEYS
    assert set(st["process"]) == PROCESS_KEYS
    assert set(st["tick"]) == TICK_KEYS
    info = os.stat(log)
    assert st["file"] == {"path": str(log), "device": info.st_dev, "inode": info.st_ino,
                          "offset": info.st_size, "size": info.st_size}
    assert st["pid"] == d.proc.pid
    assert st["protocol"] == p.PROTOCOL and isinstance(st["version"], str) and st["version"]
    assert abs(st["started_at"] - time.time()) < 60 and 0 <= st["uptime"] < 60
    assert (st["format"], st["lines"], st["parsed"], st["malformed"], st["late"]) == ("csv", 7, 7, 0, 0)
    assert now <= st["clock"] <= int(time.time()) + 1
    assert (st["threshold"], st["window"]) == (2.5, 30)
    assert st["alert"] == {"active": False, "since": None, "hits": None, "rate": None}
    assert isinstance(st["rate"], float)
    assert st["process"]["rss_bytes"] > 1_000_000 and st["process"]["open_fds"] > 3
    assert isinstance(st["process"]["cpu_percent"], float)
    assert st["clients"] == 1
    wait_for(lambda: d.status()["tick"]["count"] >= 2, what="two ticks")
    tick = d.status()["tick"]
    assert 0 < tick["p50_ms"] <= tick["p99_ms"] <= tick["max_ms"] < 1000
    with Client(d.socket) as other:
        assert d.status()["clients"] == 2
        assert other.call("ping") == {"pong": True}


def test_stats_interval_and_timeframe(logmond, short_tmp):
    log = short_tmp / "access.log"
    # 5 hits a second for 29 seconds of old log time; blocks of 10 s.
    log.write_text("".join(csv_line(T0 + s, s * 5 + i) for s in range(29) for i in range(5)))
    d = logmond("--from-start", "--lateness", "0", "--summary-interval", "10", "--timeframe", "600").start()
    d.wait_lines(145)
    with Client(d.socket) as c:
        assert set(c.call("stats")) == {"interval", "timeframe"}
        # The live clock closes the last block a few seconds later.
        stats = wait_for(lambda: (s := c.call("stats"))["interval"]["start"] == T0 + 20 and s, 15,
                         "the third block to close")
    interval, timeframe = stats["interval"], stats["timeframe"]
    assert (interval["type"], interval["end"], interval["hits"]) == ("summary", T0 + 30, 45)
    assert interval["sections"] == [["/api", 45]]
    assert interval["status"] == {"2xx": 45}
    assert timeframe["hits"] == 145 and timeframe["end"] == T0 + 30


def test_alerts_history_and_since_filter(logmond, short_tmp):
    log = short_tmp / "access.log"
    t = int(time.time())
    # Two bursts of 30 hits in a 10 s window (threshold 1/s): alert, recover, alert, recover.
    lines = [csv_line(t - 40, i) for i in range(30)] + [csv_line(t - 20, 30)]
    lines += [csv_line(t - 15, 31 + i) for i in range(30)] + [csv_line(t - 2, 61)]
    log.write_text("".join(lines))
    d = logmond("--from-start", "--lateness", "0", "--alert-window", "10", "--threshold", "1").start()
    d.wait_lines(62)
    with Client(d.socket) as c:
        events = c.call("alerts")
        assert set(events) == {"events", "more"}
        events = events["events"]
        assert [e["id"] for e in events] == [1, 2, 3, 4]
        assert [(e["type"], e["at"], e["hits"]) for e in events] == [
            ("alert", t - 40, 30), ("recover", t - 30, 0), ("alert", t - 15, 31), ("recover", t - 5, 0)]  # 31: the hit at t - 20 too
        for e in events:
            assert set(e) == EVENT_KEYS
            assert (e["threshold"], e["window"], e["rate"]) == (1.0, 10, e["hits"] / 10)
        assert c.call("alerts", since=0)["events"] == events
        assert c.call("alerts", since=2)["events"] == events[2:]
        assert c.call("alerts", since=3)["events"] == events[3:]
        assert c.call("alerts", since=4)["events"] == []
        for bad in ("2", True, 1.5):
            with pytest.raises(ApiError) as err:
                c.call("alerts", since=bad)
            assert err.value.code == p.BAD_REQUEST
        assert c.call("status")["alert"] == {"active": False, "since": None, "hits": None, "rate": None}


def test_subscribe_snapshots_and_alert_push(logmond, short_tmp):
    log = short_tmp / "access.log"
    log.write_text("")
    d = logmond("--lateness", "0", "--alert-window", "10", "--threshold", "1").start()
    with Client(d.socket, timeout=10) as c:
        pushes = c.subscribe(timeout=10)
        first = next(pushes)
        assert first["event"] == "snapshot"
        assert set(first["data"]) == {"status", "seconds", "window_end", "malformed_by_reason", "interval",
                                      "timeframe", "alerts"}
        assert set(first["data"]["status"]) == STATUS_KEYS
        seqs = [first["seq"]]
        ts = int(time.time())
        with open(log, "a") as f:  # a burst: 30 hits in one second, 3/s over 10 s > 1/s
            f.write("".join(csv_line(ts, i) for i in range(30)))
        alert = None
        deadline = time.monotonic() + 15
        while alert is None and time.monotonic() < deadline:
            msg = next(pushes)
            if msg["event"] == "snapshot":
                seqs.append(msg["seq"])
            else:
                alert = msg
        assert alert is not None, "no alert pushed within 15s"
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
        assert {k: v for k, v in alert.items() if k != "event"} == {
            "id": 1, "type": "alert", "at": ts, "hits": 30, "rate": 3.0, "threshold": 1.0, "window": 10,
            "rule": "high_traffic", "severity": "critical", "metric": "rate", "value": 3.0}
        assert alert["event"] == "alert"
        # Snapshots keep coming after the alert, and show it.
        later = [next(pushes) for _ in range(2)]
        assert all(m["event"] == "snapshot" for m in later)
        assert [m["seq"] for m in later] == [seqs[-1] + 1, seqs[-1] + 2]
        assert later[-1]["data"]["status"]["lines"] == 30
        assert later[-1]["data"]["status"]["alert"]["active"] is True
        assert [e["id"] for e in later[-1]["data"]["alerts"]] == [1]
    assert d.call("alerts")["events"] == [{k: v for k, v in alert.items() if k != "event"}]
    st = d.status()
    assert st["alert"] == {"active": True, "since": ts, "hits": 30, "rate": 3.0}


def test_shutdown_op_stops_the_daemon_with_exit_0(logmond, short_tmp):
    (short_tmp / "access.log").write_text("")
    d = logmond().start()
    proc = d.proc
    with Client(d.socket) as c:
        assert c.call("shutdown") == {}
    assert proc.wait(timeout=15) == 0
    d.proc = None
    assert not os.path.exists(d.socket)
    assert not os.path.exists(d.socket + ".lock")
    assert "Traceback" not in d.stderr()


# -- hostile clients --------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [
    b"\xc1",                                       # a byte msgpack never uses
    b"\xc1" * 64 + p.encode(p.request("ping", 2)),  # garbage before a good request
    msgpack.packb({1: "int keys"}),                # strict_map_key refuses
], ids=["reserved-byte", "garbage-then-request", "int-key"])
def test_malformed_msgpack_gets_an_error_and_is_closed(live, payload):
    with raw(live.d.socket) as s:
        s.sendall(payload)
        msgs = until_closed(s)
    assert [error_code(m) for m in msgs] == [p.BAD_REQUEST]
    live.watcher.assert_counting()


@pytest.mark.parametrize("payload", [
    msgpack.packb([1, 2, 3]),
    msgpack.packb({"op": 5, "id": 3}),
    msgpack.packb({"op": "status", "id": "three"}),
    msgpack.packb({"op": "status"}),
], ids=["array", "op-not-string", "id-not-int", "no-id"])
def test_ill_formed_request_gets_an_error_and_the_connection_stays(live, payload):
    with raw(live.d.socket) as s:
        s.sendall(payload)
        stream = messages(s)
        assert error_code(next(stream)) == p.BAD_REQUEST
        s.sendall(p.encode(p.request("status", 9)))
        reply = next(stream)
    assert reply["id"] == 9 and reply["ok"] is True and set(reply["result"]) == STATUS_KEYS
    live.watcher.assert_counting()


def _send_in_background(s: socket.socket, data: bytes) -> threading.Thread:
    def send() -> None:
        try:
            s.sendall(data)
        except OSError:
            pass  # the daemon closed on us: expected
    t = threading.Thread(target=send, daemon=True)
    t.start()
    return t


OVER = p.MAX_MESSAGE + 1024
BIG_MESSAGES = {
    # Sent whole: the unpacker's buffer limit or the per-message byte count must catch them.
    "one-big-string": p.encode({"op": "ping", "id": 5, "pad": "x" * OVER}),
    "one-big-bin": p.encode({"op": "ping", "id": 5, "pad": b"x" * OVER}),
    "many-small-items": p.encode({"op": "ping", "id": 5, "pad": ["abcdefgh"] * (OVER // 9)}),
    # Only a header announcing more than 1 MiB, then silence: refused from the header alone.
    "declared-array": b"\x82\xa2op\xa4ping\xa3pad\xdd" + (2 * p.MAX_MESSAGE).to_bytes(4, "big") + b"\xc0" * 100,
    "declared-string": b"\x82\xa2op\xa4ping\xa3pad\xdb" + (2 * p.MAX_MESSAGE).to_bytes(4, "big") + b"x" * 100,
}


@pytest.mark.parametrize("kind", list(BIG_MESSAGES))
def test_message_over_1_mib_is_refused(live, kind):
    # After hello, so that the hello timeout cannot be what closes the connection.
    with raw(live.d.socket) as s:
        sender = _send_in_background(s, BIG_MESSAGES[kind])
        msgs = until_closed(s, timeout=8)
        sender.join(timeout=10)
    # msgpack checks a declared string length only when the string is complete: that one is
    # ended by the daemon's message deadline instead of the size check.
    allowed = ([p.TOO_LARGE], [], [p.BAD_REQUEST]) if kind == "declared-string" else ([p.TOO_LARGE], [])
    assert [error_code(m) for m in msgs] in allowed, msgs
    live.watcher.assert_counting()


def test_unknown_op_and_op_before_hello(live):
    with Client(live.d.socket) as c:
        with pytest.raises(ApiError) as err:
            c.call("frobnicate", x=1)
        assert err.value.code == p.UNKNOWN_OP and "frobnicate" in err.value.message
        assert set(c.call("status")) == STATUS_KEYS  # the connection is still good
    with raw(live.d.socket, hello=False) as s:
        s.sendall(p.encode(p.request("status", 4)))
        reply = next(messages(s))
    assert reply["id"] == 4 and error_code(reply) == p.HELLO_REQUIRED
    live.watcher.assert_counting()


def test_silent_client_is_closed_after_the_hello_timeout(live):
    with raw(live.d.socket, hello=False) as s:
        started = time.monotonic()
        msgs = until_closed(s, timeout=15)
        waited = time.monotonic() - started
    assert [error_code(m) for m in msgs] == [p.HELLO_REQUIRED]
    assert 3 < waited < 10
    live.watcher.assert_counting()


def test_subscribers_that_never_read_hurt_nobody(live):
    # Each asks for 2000 status replies (~1 MB, more than the kernel buffers) and subscribes, then
    # reads nothing: logmond holds their bytes and conflates their snapshots.
    flood = b"".join(p.encode(p.request("status", i)) for i in range(100, 2100))
    stalled = []
    for _ in range(3):
        s = raw(live.d.socket)
        s.sendall(flood + p.encode(p.request("subscribe", 99)))
        stalled.append(s)
    with Client(live.d.socket, timeout=10) as c:
        pushes = c.subscribe(timeout=10)
        snaps = [next(pushes) for _ in range(5)]
    assert [m["event"] for m in snaps] == ["snapshot"] * 5
    seqs = [m["seq"] for m in snaps]
    assert seqs == list(range(seqs[0], seqs[0] + 5))
    assert snaps[-1]["data"]["status"]["lines"] > snaps[0]["data"]["status"]["lines"]
    live.watcher.assert_counting()
    # A stalled one that starts reading gets every reply in order, then only the newest snapshot.
    stream = messages(stalled[0])
    replies = [next(stream) for _ in range(2000)]
    assert [r["id"] for r in replies] == list(range(100, 2100))
    assert all(r["ok"] and set(r["result"]) == STATUS_KEYS for r in replies)
    subscribed = next(stream)
    assert subscribed["id"] == 99 and subscribed["ok"] is True
    newest = next(stream)
    assert newest["event"] == "snapshot"
    assert newest["seq"] >= seqs[-1] >= subscribed["result"]["seq"] + 4
    assert next(stream)["seq"] == newest["seq"] + 1
    live.watcher.assert_counting()


def test_client_flooding_requests_without_reading_is_dropped(live):
    s = raw(live.d.socket)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    request = p.encode(p.request("status", 7))
    # Each status reply is ~600 bytes: 20 000 of them exceed what logmond holds for one client.
    sender = _send_in_background(s, request * 20_000)
    live.watcher.assert_counting()
    sender.join(timeout=30)
    assert not sender.is_alive(), "logmond stopped reading the flood without closing the connection"
    # Read what it had sent: the connection must end (dropped), not stay open.
    s.settimeout(10)
    received = 0
    try:
        while data := s.recv(1 << 20):
            received += len(data)
    except ConnectionResetError:
        pass
    assert received < 20_000 * 600
    live.watcher.assert_counting()


def test_more_than_64_clients(live):
    # The hogs subscribe: a full table of idle non-subscribers would make room for a newcomer.
    hogs: list[socket.socket] = []
    refused: list[dict] = []
    for _ in range(70):
        s = raw(live.d.socket, hello=False)
        try:
            s.sendall(p.encode(p.request("hello", 1, protocol=p.PROTOCOL, client="hog"))
                      + p.encode(p.request("subscribe", 2)))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the 65th is refused on connect: its BUSY is already waiting to be read
        reply = next(messages(s))
        if reply["ok"]:
            hogs.append(s)
        else:
            refused.append(reply)
            assert until_closed(s) == []
            s.close()
            break
    # The watcher holds one of the 64 places.
    assert len(hogs) == 63
    assert [error_code(r) for r in refused] == [p.BUSY]
    assert "64" in refused[0]["error"]["message"]
    live.watcher.assert_counting()
    assert live.watcher.replies[-1][1]["clients"] == 64
    with pytest.raises(ApiError) as err:
        Client(live.d.socket).connect()
    assert err.value.code == p.BUSY
    hogs.pop().close()
    # A place is free again.
    wait_for(lambda: _connects(live.d.socket), 10, "a free place")
    for s in hogs:
        s.close()
    wait_for(lambda: live.watcher.replies[-1][1]["clients"] == 1, 10, "the hogs to be gone")
    live.watcher.assert_counting()


def _connects(path: str) -> bool:
    try:
        with Client(path) as c:
            c.call("ping")
        return True
    except (ClientError, ApiError):
        return False


# -- connection churn -------------------------------------------------------------------------

HELLO = p.encode(p.request("hello", 1, protocol=p.PROTOCOL, client="churn"))
LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets the connection


def _churn(path: str, cycles: int) -> None:
    """Connect and close, as fast as possible: every other connection says hello and is reset with
    the reply unread, the others close plainly. Refusals (busy, full backlog) are part of it."""
    for i in range(cycles):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(path)
                if i % 2:
                    s.send(HELLO)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
            except OSError:
                pass


def _fresh_rss(d: Logmond) -> int:
    """The daemon's RSS measured at a tick after now: the second snapshot a new subscriber gets."""
    wait_for(lambda: _connects(d.socket), 10, "a free place")
    with Client(d.socket, timeout=10) as c:
        pushes = c.subscribe(timeout=10)
        next(pushes)
        return next(pushes)["data"]["status"]["process"]["rss_bytes"]


def test_connection_churn_leaves_memory_where_it_was(logmond, short_tmp):
    (short_tmp / "access.log").write_text("")
    d = logmond().start()
    _churn(d.socket, 2_000)  # warm-up: the allocator's pools and free lists reach their working size
    before = _fresh_rss(d)
    _churn(d.socket, 20_000)
    after = _fresh_rss(d)
    assert after - before < 10 * 2**20, f"RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB"
    assert d.status()["clients"] == 1
    assert "socket.send() raised exception" not in d.stderr()
    assert d.stop() == 0
