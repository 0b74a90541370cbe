"""`make run`'s pieces, without the interactive viewer: they start, run, and leave nothing behind."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
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


def start_demo() -> tuple[subprocess.Popen, str, str]:
    demo = subprocess.Popen([sys.executable, "-m", "logmond.tools.demo", "--no-viewer"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = demo.stdout.readline()
    match = re.match(r"demo running in (\S+): logmonctl --socket (\S+) status", first)
    if not match:
        demo.kill()
        out, err = demo.communicate()
        raise AssertionError(first + out + err)
    return demo, match.group(1), match.group(2)


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
    demo.send_signal(how)
    demo.wait(timeout=20)
    assert "Traceback" not in demo.stderr.read()
    wait_for(lambda: not processes_mentioning(work), timeout=15, what="the demo's children to exit")
    if how == signal.SIGKILL:
        shutil.rmtree(work)  # a killed demo cannot tidy up its directory; its children it can
    else:
        assert not os.path.exists(work)
