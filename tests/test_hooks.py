"""Exec hooks against real processes: what a hook is given, which hooks run, timeouts, the
limits on a burst, hooks that cannot start or fail, and shutdown."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import pytest

from logmond import hooks as hooks_module
from logmond.core.targets import HookSpec
from logmond.hooks import HOOK_QUEUE, KILL_GRACE, MAX_RUNNING_HOOKS, STDERR_TAIL, Hooks, check_commands
from shared.schema import iso_utc

AT = 1_549_573_860  # 2019-02-07T21:11:00Z
T = TypeVar("T")


def alert(**changes: Any) -> dict[str, Any]:
    """A `[[rule]]` alert event; `changes` replace or add keys."""
    event = {"id": 7, "type": "alert", "at": AT, "rule": "api_errors", "severity": "critical",
             "metric": "status_share", "value": 0.075, "threshold": 0.05, "window": 60, "hits": 120,
             "section": "/api", "vhost": "shop", "status": "5xx"}
    event.update(changes)
    return event


def script(tmp_path: Path, name: str, body: str, shebang: str = "/bin/sh") -> str:
    path = tmp_path / name
    path.write_text(f"#!{shebang}\n{body}")
    path.chmod(0o755)
    return str(path)


def spec(*command: str, on: tuple[str, ...] = ("alert", "recover"), rules: tuple[str, ...] | None = None,
         timeout: float = 5.0) -> HookSpec:
    return HookSpec(tuple(command), frozenset(on), None if rules is None else frozenset(rules), timeout)


async def until(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Let the loop run until `condition()` is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def drive(hooks: Hooks, body: Awaitable[T]) -> T:
    """asyncio.run(body), closing `hooks` at its end whatever happens: a failed assertion must
    leave no hook running (nor have asyncio's teardown cancel one while it is being started)."""
    async def main() -> T:
        try:
            return await body
        finally:
            await hooks.close(grace=0)
    return asyncio.run(main())


def idle(hooks: Hooks) -> bool:
    return hooks.running == 0 and hooks.queued == 0


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "logmond" and r.levelno == level]


@pytest.fixture(autouse=True)
def _info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="logmond")


RECORDER = """
import json, os, sys
out = os.path.join(sys.argv[1], os.environ["LOGMON_RULE"] + ".json")
record = {"env": {k: v for k, v in os.environ.items() if k.startswith("LOGMON_")},
          "inherited": os.environ.get("HOOK_TEST_INHERITED"), "stdin": sys.stdin.read(),
          "own_group": os.getpgid(0) == os.getpid()}
with open(out + ".part", "w") as f:
    json.dump(record, f)
os.rename(out + ".part", out)
"""


def test_a_hook_gets_the_event_in_its_environment_and_on_stdin(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_TEST_INHERITED", "from the daemon")
    recorder = script(tmp_path, "record", RECORDER, shebang=sys.executable)
    rule_event = alert()
    builtin = {"id": 8, "type": "recover", "at": AT + 60, "rule": "high_traffic", "severity": "critical",
               "metric": "rate", "value": 8.5, "rate": 8.5, "threshold": 10, "window": 120, "hits": 1020}

    hooks = Hooks([spec(recorder, str(tmp_path))], host="web-1")

    async def main() -> None:
        hooks.submit(rule_event)
        hooks.submit(builtin)
        await until(lambda: hooks.started == 2 and idle(hooks), what="both runs")

    drive(hooks, main())
    assert (hooks.started, hooks.failed, hooks.killed, hooks.dropped) == (2, 0, 0, 0)
    first = json.loads((tmp_path / "api_errors.json").read_text())
    message = "api_errors generated an alert - status_share = 7.50%, triggered at 2019-02-07T21:11:00Z"
    assert first["env"] == {
        "LOGMON_EVENT": "alert", "LOGMON_RULE": "api_errors", "LOGMON_SEVERITY": "critical",
        "LOGMON_METRIC": "status_share", "LOGMON_VALUE": "0.075", "LOGMON_THRESHOLD": "0.05", "LOGMON_AT": "2019-02-07T21:11:00Z",
        "LOGMON_MESSAGE": message, "LOGMON_HOST": "web-1", "LOGMON_SECTION": "/api", "LOGMON_VHOST": "shop"}
    assert json.loads(first["stdin"]) == {**rule_event, "message": message, "host": "web-1"}
    assert first["inherited"] == "from the daemon"
    assert first["own_group"] is True

    second = json.loads((tmp_path / "high_traffic.json").read_text())
    message = "High traffic alert recovered - hits = 1020, recovered at 2019-02-07T21:12:00Z (8.50/s over 120s)"
    assert second["env"] == {
        "LOGMON_EVENT": "recover", "LOGMON_RULE": "high_traffic", "LOGMON_SEVERITY": "critical",
        "LOGMON_METRIC": "rate", "LOGMON_VALUE": "8.5", "LOGMON_THRESHOLD": "10.0", "LOGMON_AT": "2019-02-07T21:12:00Z",
        "LOGMON_MESSAGE": message, "LOGMON_HOST": "web-1"}
    assert json.loads(second["stdin"]) == {**builtin, "message": message, "host": "web-1"}
    assert sorted(messages(caplog, logging.INFO)) == [f"hook {recorder} for api_errors alert: exit 0",
                                                      f"hook {recorder} for high_traffic recover: exit 0"]


def test_only_the_hooks_that_want_an_event_run(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    note = script(tmp_path, "note", 'echo "$1 $LOGMON_EVENT $LOGMON_RULE" >> "$2"\n')
    recoveries = spec(note, "recoveries", str(ran), on=("recover",))
    api = spec(note, "api", str(ran), rules=("api_errors",))
    slow_alerts = spec(note, "slow-alerts", str(ran), on=("alert",), rules=("slow", "slower"))
    events = [alert(), alert(type="recover"), alert(rule="high_traffic"), alert(rule="slow", type="recover"),
              alert(rule="slow")]

    hooks = Hooks([recoveries, api, slow_alerts], host="web-1")

    async def main() -> None:
        for event in events:
            hooks.submit(event)
        await until(lambda: hooks.started == 5 and idle(hooks), what="five runs")
        # A reload: from now on only `api` is configured.
        hooks.replace([api])
        hooks.submit(alert(rule="slow"))
        hooks.submit(alert(rule="slow", type="recover"))
        hooks.submit(alert(type="recover"))
        await until(lambda: hooks.started == 6 and idle(hooks), what="the run after the reload")

    drive(hooks, main())
    assert sorted(ran.read_text().splitlines()) == [
        "api alert api_errors", "api recover api_errors", "api recover api_errors",
        "recoveries recover api_errors", "recoveries recover slow", "slow-alerts alert slow"]
    assert (hooks.started, hooks.failed, hooks.dropped) == (6, 0, 0)


def test_a_hung_hook_is_killed_at_its_timeout_and_the_loop_goes_on(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    stubborn = script(tmp_path, "stubborn", f"""echo $$ > {tmp_path}/stubborn.pid
trap 'echo got TERM >> {tmp_path}/terms; echo "got TERM, staying" >&2' TERM
while :; do sleep 0.05; done
""")
    sleepy = spec("sleep", "60", rules=("sleepy",), timeout=0.5)
    deaf = spec(stubborn, rules=("stubborn",), timeout=0.5)
    every = 0.05
    hooks = Hooks([sleepy, deaf], host="web-1")

    async def main() -> tuple[list[float], list[float]]:
        loop = asyncio.get_running_loop()
        ticks: list[float] = []

        def tick() -> None:
            ticks.append(time.monotonic())
            loop.call_later(every, tick)

        tick()
        started = time.monotonic()
        hooks.submit(alert(rule="sleepy"))
        hooks.submit(alert(rule="stubborn"))
        kills: list[float] = []
        while hooks.killed < 2:
            if hooks.killed > len(kills):
                kills.append(time.monotonic() - started)
            if time.monotonic() - started > 3 * KILL_GRACE + 1:
                pytest.fail("the hooks were not killed")
            await asyncio.sleep(0.01)
        kills.append(time.monotonic() - started)
        return kills, ticks

    kills, ticks = drive(hooks, main())
    assert (hooks.started, hooks.killed, hooks.failed, hooks.running) == (2, 2, 0, 0)
    # `sleep` dies of SIGTERM at its timeout; the stubborn one outlives it and gets SIGKILL.
    assert 0.45 <= kills[0] < 0.5 + KILL_GRACE / 2
    assert 0.5 + KILL_GRACE - 0.05 <= kills[1] < 0.5 + 2 * KILL_GRACE
    assert sorted(messages(caplog, logging.WARNING)) == sorted([
        "hook sleep for sleepy alert: killed after 0.5 s timeout",
        f"hook {stubborn} for stubborn alert: killed after 0.5 s timeout "
        f"(SIGKILL: it outlived SIGTERM by {KILL_GRACE:g} s): got TERM, staying"])
    assert (tmp_path / "terms").read_text() == "got TERM\n"
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "stubborn.pid").read_text()), 0)
    # The loop kept its pace all along: a tick every 50 ms, none held up.
    assert len(ticks) >= 0.8 * kills[1] / every
    assert max(b - a for a, b in zip(ticks, ticks[1:])) < 4 * every


def test_a_burst_returns_at_once_runs_four_at_a_time_and_drops_the_oldest(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "running").mkdir()
    busy = script(tmp_path, "busy", f"""touch {tmp_path}/running/$$
ls {tmp_path}/running | wc -l >> {tmp_path}/concurrency
sleep 0.3
echo "$LOGMON_AT" >> {tmp_path}/ran
rm {tmp_path}/running/$$
""")
    burst = 100
    hooks = Hooks([spec(busy)], host="web-1")

    async def main() -> tuple[float, float, tuple[int, int, int], int]:
        loop = asyncio.get_running_loop()
        most = 0
        slowest = 0.0

        def sample() -> None:
            nonlocal most
            most = max(most, hooks.running)
            loop.call_later(0.005, sample)

        started = time.perf_counter()
        for i in range(burst):
            before = time.perf_counter()
            hooks.submit(alert(id=i, at=AT + i))
            slowest = max(slowest, time.perf_counter() - before)
        took = time.perf_counter() - started
        at_once = hooks.running, hooks.queued, hooks.dropped
        sample()
        await until(lambda: idle(hooks), timeout=30, what="the burst to drain")
        return took, slowest, at_once, most

    took, slowest, at_once, most = drive(hooks, main())
    # Nothing blocks (loose bounds: no benchmark): no process is started inside `submit`.
    assert took < 0.5 and slowest < 0.05
    kept = MAX_RUNNING_HOOKS + HOOK_QUEUE
    assert at_once == (MAX_RUNNING_HOOKS, HOOK_QUEUE, burst - kept) == (4, 64, 32)
    assert (hooks.started, hooks.dropped, hooks.failed, hooks.killed) == (kept, burst - kept, 0, 0)
    assert most == MAX_RUNNING_HOOKS
    counts = [int(n) for n in (tmp_path / "concurrency").read_text().split()]
    assert len(counts) == kept and 2 <= max(counts) <= MAX_RUNNING_HOOKS
    # The first four started at once; of the rest, the newest 64 waited and ran.
    expected = [iso_utc(AT + i) for i in [*range(MAX_RUNNING_HOOKS), *range(burst - HOOK_QUEUE, burst)]]
    assert sorted((tmp_path / "ran").read_text().split()) == expected
    # The first drop is named at once, the other 31 summed up once the queue emptied.
    assert messages(caplog, logging.WARNING) == [
        f"hook queue full ({HOOK_QUEUE} waiting): dropped the oldest run, hook {busy} for api_errors alert",
        f"hook queue full: 31 more dropped: {busy} for api_errors alert (31)"]


def test_an_overflow_that_goes_on_is_summed_up_as_it_goes(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hooks_module, "DROP_SUMMARY_EVERY", 0.0)
    waiter = script(tmp_path, "waiter", "exec sleep 60\n")

    hooks = Hooks([spec(waiter, rules=("api_errors",)), spec(waiter, rules=("slow",))], host="web-1")

    async def main() -> None:
        for _ in range(MAX_RUNNING_HOOKS + HOOK_QUEUE + 1):
            hooks.submit(alert())
        hooks.submit(alert(rule="slow"))
        hooks.submit(alert(rule="slow"))

    drive(hooks, main())
    assert hooks.dropped == 3 + HOOK_QUEUE
    assert [m for m in messages(caplog, logging.WARNING) if "killed" not in m] == [
        f"hook queue full ({HOOK_QUEUE} waiting): dropped the oldest run, hook {waiter} for api_errors alert",
        f"hook queue full: 1 more dropped: {waiter} for api_errors alert (1)",
        f"hook queue full: 1 more dropped: {waiter} for api_errors alert (1)",
        f"shutting down: {HOOK_QUEUE} queued hook runs dropped"]


def test_a_command_that_cannot_start_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\ntrue\n")
    plain.chmod(0o644)
    fine = script(tmp_path, "fine", "true\n")
    missing = "/nonexistent/logmon-hook"

    hooks = Hooks([spec(missing), spec(str(plain)), spec(fine)], host="web-1")

    async def main() -> None:
        hooks.submit(alert())
        await until(lambda: hooks.failed == 2 and hooks.started == 1 and idle(hooks), what="the three runs")

    drive(hooks, main())
    assert (hooks.started, hooks.failed, hooks.killed) == (1, 2, 0)
    assert sorted(messages(caplog, logging.WARNING)) == [
        f"hook {missing} for api_errors alert: cannot start: No such file or directory",
        f"hook {plain} for api_errors alert: cannot start: Permission denied"]
    assert messages(caplog, logging.INFO) == [f"hook {fine} for api_errors alert: exit 0"]

    assert check_commands([spec(fine), spec("sh", "-c", "true")]) is None
    assert check_commands([spec(fine), spec(missing)]) == \
        f"[[notify]] #2: command '{missing}' is not an executable file"
    assert check_commands([spec(str(plain)), spec(missing)]) == \
        f"[[notify]] #1: command '{plain}' is not an executable file"
    assert check_commands([spec(str(tmp_path))]) == f"[[notify]] #1: command '{tmp_path}' is not an executable file"
    assert check_commands([spec(fine), spec(fine), spec("no-such-logmon-hook")]) == \
        "[[notify]] #3: command 'no-such-logmon-hook' is not found on PATH"


def test_a_failing_hook_is_logged_with_the_last_line_of_its_stderr(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    # A megabyte of stderr first: only its end is kept, and the hook is not held up writing it.
    failing = script(tmp_path, "failing", """head -c 1000000 /dev/zero | tr '\\0' x >&2
printf '\\nfirst\\nboom\\n\\n  \\n' >&2
exit 3
""")
    signalled = script(tmp_path, "signalled", "echo 'about to go' >&2\nkill -USR1 $$\n")
    # One line of a megabyte: what is logged of it is the STDERR_TAIL bytes kept.
    long_line = script(tmp_path, "long-line", "head -c 1000000 /dev/zero | tr '\\0' y >&2\nexit 1\n")

    hooks = Hooks([spec(failing, rules=("api_errors",)), spec(signalled, rules=("slow",)),
                   spec(long_line, rules=("long",))], host="web-1")

    async def main() -> None:
        for rule in ("api_errors", "slow", "long"):
            hooks.submit(alert(rule=rule))
        await until(lambda: hooks.failed == 3 and idle(hooks), what="the failures")

    drive(hooks, main())
    assert (hooks.started, hooks.failed, hooks.killed) == (3, 3, 0)
    assert sorted(messages(caplog, logging.WARNING)) == [
        f"hook {failing} for api_errors alert: exit 3: boom",
        f"hook {long_line} for long alert: exit 1: " + "y" * STDERR_TAIL,
        f"hook {signalled} for slow alert: killed by SIGUSR1: about to go"]


def test_close_kills_the_running_hooks_and_drops_the_queued(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    waiter = script(tmp_path, "waiter", 'echo $$ > "$1/pid.$$"\nexec sleep 60\n')
    (tmp_path / "pids").mkdir()
    pids = lambda: sorted((tmp_path / "pids").glob("pid.*"))  # noqa: E731

    just_started = Hooks([spec(waiter, str(tmp_path), timeout=30)], host="web-1")

    async def at_once() -> None:
        """No grace: the hooks are still being started when they are to be killed."""
        just_started.submit(alert(rule="just_started"))
        just_started.submit(alert(rule="just_started"))
        await asyncio.wait_for(just_started.close(grace=0), KILL_GRACE)

    drive(just_started, at_once())
    assert (just_started.started, just_started.killed, just_started.running) == (2, 2, 0)
    caplog.clear()

    hooks = Hooks([spec(waiter, str(tmp_path / "pids"), timeout=30)], host="web-1")
    overflow = 3

    async def main() -> float:
        for i in range(MAX_RUNNING_HOOKS + HOOK_QUEUE + overflow):
            hooks.submit(alert(id=i))
        await until(lambda: len(pids()) == MAX_RUNNING_HOOKS, what="four hooks running")
        started = time.monotonic()
        await hooks.close(grace=0.2)
        took = time.monotonic() - started
        hooks.submit(alert())  # after close: nothing more runs
        await asyncio.sleep(0.1)
        return took

    took = drive(hooks, main())
    # `sleep` dies of the SIGTERM that ends the grace: no SIGKILL needed.
    assert 0.2 <= took < 0.2 + KILL_GRACE / 4
    assert (hooks.started, hooks.killed, hooks.dropped, hooks.failed) == \
        (MAX_RUNNING_HOOKS, MAX_RUNNING_HOOKS, HOOK_QUEUE + overflow, 0)
    assert (hooks.running, hooks.queued) == (0, 0)
    # The overflow's drops not yet summed up are told before the queue's.
    assert messages(caplog, logging.WARNING) == [
        f"hook queue full ({HOOK_QUEUE} waiting): dropped the oldest run, hook {waiter} for api_errors alert",
        f"hook queue full: 2 more dropped: {waiter} for api_errors alert (2)",
        f"shutting down: {HOOK_QUEUE} queued hook runs dropped",
        *[f"hook {waiter} for api_errors alert: killed at shutdown"] * MAX_RUNNING_HOOKS]
    for path in pids():
        with pytest.raises(ProcessLookupError):
            os.kill(int(path.read_text()), 0)
