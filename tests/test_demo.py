"""`make run`'s pieces, without the interactive viewer: they start, run, and leave nothing behind."""
from __future__ import annotations

import os
import pty
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import wait_for
from shared.client import Client


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


# The logmonctl a newcomer types after `make run`: the script next to the venv's Python.
LOGMONCTL = os.path.relpath(Path(sys.executable).with_name("logmonctl"))
STARTED = re.compile(r"demo: logmond serves (/tmp/logmon-demo-\w+/logmond\.sock); query it from another terminal "
                     r"with: (\S+ --socket \1 status)")


def stopped(socket: str) -> str:
    return (f"demo stopped: logmond on {socket} has exited and {os.path.dirname(socket)} is removed "
            f"(while it ran: {LOGMONCTL} --socket {socket} status)")


def start_demo() -> tuple[subprocess.Popen, str, str]:
    demo = subprocess.Popen([sys.executable, "-m", "logmond.tools.demo", "--no-viewer"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = demo.stdout.readline()
    match = STARTED.fullmatch(first.rstrip("\n"))
    if not match:
        demo.kill()
        out, err = demo.communicate()
        raise AssertionError(first + out + err)
    socket, query = match.groups()
    assert query == f"{LOGMONCTL} --socket {socket} status"
    return demo, os.path.dirname(socket), socket


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_demo_generates_live_traffic_and_leaves_no_process_behind(how):
    demo, work, socket = start_demo()
    with demo:
        check_demo(demo, work, socket, how)


def check_demo(demo: subprocess.Popen, work: str, socket: str, how: int) -> None:
    assert len(processes_mentioning(work)) == 2, "the generator and logmond"

    def counted() -> dict | None:
        with Client(socket) as client:
            status = client.call("status")
        return status if status["lines"] > 0 else None

    status = wait_for(counted, timeout=20, what="generated lines to be counted")
    assert status["format"] == "combined" and status["malformed"] == 0
    query = subprocess.run(shlex.split(f"{LOGMONCTL} --socket {socket} status"), capture_output=True, text=True,
                           timeout=30)  # the command the demo printed, as typed
    assert query.returncode == 0 and query.stdout.startswith("logmond ") and query.stderr == "", query
    demo.send_signal(how)
    demo.wait(timeout=20)
    assert "Traceback" not in demo.stderr.read()
    # A killed demo cannot say anything more; a stopped one says again what it served.
    assert demo.stdout.read() == ("" if how == signal.SIGKILL else stopped(socket) + "\n")
    wait_for(lambda: not processes_mentioning(work), timeout=15, what="the demo's children to exit")
    if how == signal.SIGKILL:
        shutil.rmtree(work)  # a killed demo cannot tidy up its directory; its children it can
    else:
        assert not os.path.exists(work)


def test_make_run_prints_how_to_query_logmond_before_the_viewer_and_again_after_it():
    """The demo as `make run` starts it, with the viewer, in a real terminal: q quits."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("LINES", "COLUMNS")} | {"TERM": "xterm-256color"}
    demo = subprocess.Popen([sys.executable, "-m", "logmond.tools.demo"], stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True, env=env)
    os.close(slave)
    output = bytearray()

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the demo closed its end
                return
            if not data:
                return
            output.extend(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        smcup = b"\x1b[?1049h"  # the viewer takes the screen
        wait_for(lambda: smcup in output, timeout=30, what="the viewer to start")
        before = bytes(output[:output.index(smcup)]).decode()
        match = STARTED.search(before)
        assert match, before
        os.write(master, b"q")
        assert demo.wait(timeout=30) == 0
        reader.join(timeout=10)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        os.close(master)
    after = bytes(output[output.rindex(b"\x1b[?1049l"):]).decode()  # once the viewer handed the screen back
    text = re.sub(r"\x1b(\[[0-9;?]*[A-Za-z]|[=>])", "", after)  # the terminal's own controls
    assert [line for line in text.splitlines() if line.strip()] == [stopped(match[1])], after
    assert not os.path.exists(os.path.dirname(match[1]))
