"""The systemd unit, the example config, and logmond's side of the systemd contract, for real:
`systemd-analyze` on the unit, a real logmond talking to a fake $NOTIFY_SOCKET, SIGHUP reloads."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Callable

import pytest

from logmond import config
from logmond.core import settings
from logmond.core.settings import CoreConfig
from logmond.notify import Notifier
from shared import paths
from conftest import T0, Logmond, csv_line, wait_for

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "logmond.service"
EXAMPLE = ROOT / "systemd" / "logmond.toml"
INSTALLED_BINARY = "/usr/local/bin/logmond"
# The unit's WatchdogSec= is 30; tests use a short period so that pings come quickly.
WATCHDOG_USEC = 400_000


# -- the unit file -----------------------------------------------------------------------------

def unit_settings(text: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> values in order; the unit format's own rules, no interpretation."""
    settings: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault((section, key.strip()), []).append(value.strip())
    return settings


SETTINGS = unit_settings(UNIT.read_text())


def service(key: str) -> str:
    """The last value of a [Service] setting."""
    return SETTINGS[("Service", key)][-1]


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found:
        return found
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail("systemd-analyze is missing in CI: .ci/run installs the `systemd` package")
    pytest.skip("systemd-analyze not installed (Debian: apt-get install systemd); CI runs this test")


def venv_logmond() -> str:
    """The logmond console script of the interpreter running the tests."""
    candidate = Path(sys.executable).parent / "logmond"
    found = str(candidate) if candidate.exists() else shutil.which("logmond")
    assert found, "no logmond console script next to the test interpreter or on PATH"
    return os.path.abspath(found)


def unit_copy(directory: Path, text: str | None = None) -> Path:
    """A copy of the unit whose ExecStart runs the venv's logmond (verify needs a real binary)."""
    text = UNIT.read_text() if text is None else text
    exec_start = re.compile(rf"^ExecStart={re.escape(INSTALLED_BINARY)}(?=\s|$)", re.M)
    assert len(exec_start.findall(text)) == 1, f"the unit should have one ExecStart={INSTALLED_BINARY} ..."
    path = directory / "logmond.service"
    path.write_text(exec_start.sub(f"ExecStart={venv_logmond()}", text))
    return path


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([systemd_analyze(), "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=60, cwd=unit.parent)


def test_unit_verifies_without_any_warning(tmp_path: Path) -> None:
    result = verify(unit_copy(tmp_path))
    # A bad value is "ignored" with a warning on stderr and exit status 0: both must be clean.
    assert (result.returncode, result.stderr) == (0, ""), result.stderr


def test_verify_catches_a_trailing_comment(tmp_path: Path) -> None:
    """The guard above works with this systemd: a trailing comment is only a warning."""
    text = UNIT.read_text().replace("\nWatchdogSec=30\n", "\nWatchdogSec=30 # half is the ping\n")
    assert "# half is the ping" in text
    result = verify(unit_copy(tmp_path, text))
    assert "WatchdogSec" in result.stderr or "30 # half" in result.stderr, result


IP_BACK = {"PrivateNetwork": "no", "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "IPAddressAllow": "localhost"}


@pytest.mark.parametrize("name, expected", [
    ("notify.conf", IP_BACK),
    ("metrics.conf", {**IP_BACK, "SocketBindAllow": "tcp:9101", "SocketBindDeny": "any"}),
])
def test_a_network_drop_in_gives_ip_to_the_allowed_addresses_only(tmp_path: Path, name: str, expected: dict) -> None:
    """A drop-in of systemd/, merged into the unit as systemd merges one, verifies cleanly and
    opens IP without opening every address (metrics.conf: nor binding any port but its own)."""
    drop_in = (UNIT.parent / name).read_text()
    lines = [line for line in drop_in.splitlines() if re.match(r"^[A-Za-z]+=", line)]
    assert dict(line.split("=", 1) for line in lines) == expected
    merged = UNIT.read_text().replace("\n[Install]\n", "\n" + "\n".join(lines) + "\n\n[Install]\n")
    result = verify(unit_copy(tmp_path, merged))
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert service("IPAddressDeny") == "any"  # still the default for every other address


def test_unit_has_no_trailing_comments() -> None:
    bad = [line for line in UNIT.read_text().splitlines()
           if re.match(r"^\s*[A-Za-z]+\s*=", line) and re.search(r"\s[#;]", line.split("=", 1)[1])]
    assert bad == []


def test_unit_contract() -> None:
    assert service("Type") == "notify"
    assert service("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert service("Restart") == "on-failure"
    assert service("WatchdogSec") == "30"
    # Startup and configuration errors exit 2; restarting cannot fix them.
    assert "2" in service("RestartPreventExitStatus").split()
    assert service("User") == service("Group") == "logmond"
    assert service("CapabilityBoundingSet") == ""
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
                "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "RestrictNamespaces",
                "LockPersonality", "MemoryDenyWriteExecute"):
        assert service(key) == "yes", key
    assert service("ProtectSystem") == "strict"
    assert service("RestrictAddressFamilies") == "AF_UNIX"
    assert service("SystemCallArchitectures") == "native"
    assert "/var/log" in service("ReadOnlyPaths").split()


def test_unit_paths_agree_with_logmonctl_and_the_writable_dirs() -> None:
    """ExecStart pins socket and state dir inside the only writable dirs (ProtectSystem=strict),
    at the paths root's logmonctl resolves by default."""
    args = service("ExecStart").split()
    assert args[0] == INSTALLED_BINARY
    sock = args[args.index("--socket") + 1]
    state = args[args.index("--state-dir") + 1]
    assert sock == paths.socket_path(env={}, uid=0)
    assert state == paths.state_dir(env={}, uid=0)
    assert os.path.dirname(sock) == "/run/" + service("RuntimeDirectory")
    assert state == "/var/lib/" + service("StateDirectory")
    # Group members must be able to reach the 0660 socket: the directory lets the group through.
    mode = int(service("RuntimeDirectoryMode"), 8)
    assert mode & 0o050 == 0o050 and mode & 0o007 == 0


def test_security_exposure_is_low(tmp_path: Path) -> None:
    analyze = systemd_analyze()
    unit = unit_copy(tmp_path)
    result = subprocess.run([analyze, "security", "--offline=yes", str(unit)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    if "offline" in result.stderr and result.returncode != 0:
        pytest.skip(f"this systemd-analyze cannot score offline: {result.stderr.strip()}")
    match = re.search(r"Overall exposure level for logmond\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    # Measured 0.4 with systemd 252 ("SAFE"); 10 is an unhardened service.
    assert float(match.group(1)) < 1.5, result.stdout


# -- the example config ------------------------------------------------------------------------

def test_example_config_documents_every_key_with_its_default(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    uncommented = re.sub(r"^# (\w+ = |\[\[?\w+\]\]?$)", r"\1", text, flags=re.M)
    table = tomllib.loads(uncommented)
    assert set(table) == set(settings.TOML_KEYS)
    path = tmp_path / "logmond.toml"
    path.write_text(uncommented)
    values = config.load(str(path))[1]
    # Every key at its default, and one example of each table.
    assert settings.core_config(values) == replace(CoreConfig(), rules=values["rule"])
    assert [rule.name for rule in values["rule"]] == ["api_errors"] and len(values["notify"]) == 1
    assert values["alertmanager"].url == "http://127.0.0.1:9093"
    assert values["socket"] == paths.socket_path(env={}, uid=0)
    assert values["state_dir"] == paths.state_dir(env={}, uid=0)
    assert values["from_start"] is False
    # As shipped, only `file` is set, and the file is valid.
    assert config.load(str(EXAMPLE))[1] == {"file": table["file"]}


# -- logmond and $NOTIFY_SOCKET ----------------------------------------------------------------

class NotifySocket:
    """What systemd listens on: one datagram per notification."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(10)

    def next(self) -> tuple[float, set[str]]:
        """(arrival time, the datagram's assignments); STATUS= lines are ignored."""
        while True:
            data = self.sock.recv(4096)
            lines = {line for line in data.decode().splitlines() if line and not line.startswith("STATUS=")}
            if lines:
                return time.monotonic(), lines

    def close(self) -> None:
        self.sock.close()


def run_notify_lifecycle(d: Logmond, listener: NotifySocket, notify_socket: str) -> list[float]:
    """READY=1 once the socket answers, WATCHDOG=1 pings, STOPPING=1 and exit 0 on SIGTERM.
    Returns the arrival times of the watchdog pings."""
    stderr = open(d.stderr_path, "ab")
    d.proc = subprocess.Popen(d.command(), stdout=subprocess.DEVNULL, stderr=stderr,
                              env={**os.environ, "NOTIFY_SOCKET": notify_socket, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    stderr.close()
    _, first = listener.next()
    assert first == {"READY=1"}, d.stderr()
    # Ready means ready: the API answers the moment systemd is told.
    assert d.answers(), "READY=1 sent before the socket answers"
    pings = []
    while len(pings) < 3:
        when, message = listener.next()
        assert message == {"WATCHDOG=1"}, message
        pings.append(when)
    assert d.stop(signal.SIGTERM) == 0, d.stderr()
    assert listener.next()[1] == {"STOPPING=1"}
    assert not os.path.exists(d.socket), "socket file left behind"
    assert not os.path.exists(d.socket + ".lock"), "lock file left behind"
    return pings


def test_ready_watchdog_stopping_on_a_path_socket(logmond: Callable[..., Logmond], short_tmp: Path) -> None:
    d = logmond()
    d.log.write_text("")
    address = str(short_tmp / "notify")
    listener = NotifySocket(address)
    try:
        run_notify_lifecycle(d, listener, address)
    finally:
        listener.close()


def test_ready_watchdog_stopping_on_an_abstract_socket(logmond: Callable[..., Logmond]) -> None:
    d = logmond()
    d.log.write_text("")
    name = f"logmond-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    listener = NotifySocket("\0" + name)
    try:
        run_notify_lifecycle(d, listener, "@" + name)
    finally:
        listener.close()


def test_watchdog_pings_come_within_the_watchdog_period(logmond: Callable[..., Logmond], short_tmp: Path) -> None:
    d = logmond()
    d.log.write_text("")
    address = str(short_tmp / "notify")
    listener = NotifySocket(address)
    try:
        pings = run_notify_lifecycle(d, listener, address)
    finally:
        listener.close()
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert max(gaps) < WATCHDOG_USEC / 1e6, gaps


# logmond with an audit hook (PEP 578) that records, in the file named by the first argument, every
# AF_UNIX datagram socket the daemon creates and every sendto() it makes: its notifications as
# seen from inside the process, the daemon's own code unchanged.
AUDITED = """
import os, runpy, socket, sys
out = os.open(sys.argv.pop(1), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
def hook(event, args):
    if event == "socket.__new__" and args[1] == socket.AF_UNIX and args[2] & 0xF == socket.SOCK_DGRAM:
        os.write(out, b"datagram socket\\n")
    elif event == "socket.sendto":
        os.write(out, f"sendto {args[1]!r}\\n".encode())
sys.addaudithook(hook)
runpy.run_module("logmond", run_name="__main__", alter_sys=True)
"""


def start_audited(d: Logmond, record: Path, env: dict[str, str]) -> None:
    """Start d under the audit hook, recording into `record` (created empty at once)."""
    stderr = open(d.stderr_path, "ab")
    d.proc = subprocess.Popen([sys.executable, "-c", AUDITED, str(record), *d.command()[3:]],
                              stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, **env})
    stderr.close()
    wait_for(d.answers, 15, "logmond to answer under the audit hook")


def test_no_notify_socket_means_no_notifications(logmond: Callable[..., Logmond], short_tmp: Path) -> None:
    assert not Notifier({"NOTIFY_SOCKET": "", "WATCHDOG_USEC": str(WATCHDOG_USEC)}).enabled
    d = logmond()
    d.log.write_text("")
    # The record shows notifications when there are some: with a socket, READY=1 and the pings.
    address = str(short_tmp / "notify")
    listener = NotifySocket(address)
    try:
        sent = short_tmp / "sent.txt"
        start_audited(d, sent, {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
        assert listener.next()[1] == {"READY=1"} and listener.next()[1] == {"WATCHDOG=1"}
        assert d.stop() == 0
        record = sent.read_text().splitlines()
        assert record.count(f"sendto {address!r}") >= 3, record  # READY, WATCHDOG, STOPPING
        assert record.count("datagram socket") >= 3, record
    finally:
        listener.close()
    # With $NOTIFY_SOCKET empty and a watchdog period that would make it ping five times a second:
    # no datagram socket, no sendto() at all, from start to exit.
    unsent = short_tmp / "unsent.txt"
    start_audited(d, unsent, {"NOTIFY_SOCKET": "", "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    # Long enough a life to have pinged three times at WATCHDOG_USEC / 2, had it pinged at all.
    wait_for(lambda: d.status()["uptime"] >= 3 * WATCHDOG_USEC / 2e6, 10, "three watchdog periods")
    assert d.stop() == 0
    assert unsent.read_text() == ""
    assert "Traceback" not in d.stderr()


# -- SIGHUP ------------------------------------------------------------------------------------

def write_config(path: Path, text: str) -> None:
    """Atomically, as an editor or config manager would: the daemon never reads half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def append(log: Path, start: int, count: int) -> None:
    with open(log, "a") as f:
        f.writelines(csv_line(T0 + start + i, start + i) for i in range(count))


def test_sighup_reloads_threshold_and_reopens_counting_each_line_once(
        logmond: Callable[..., Logmond], short_tmp: Path) -> None:
    cfg = short_tmp / "logmond.toml"
    write_config(cfg, "threshold = 1000\n")
    d = logmond("--config", str(cfg), "--from-start")
    append(d.log, 0, 5)
    d.start()
    assert d.wait_lines(5)["threshold"] == 1000.0

    write_config(cfg, "threshold = 1\n")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: d.status()["threshold"] == 1.0, 10, "threshold 1.0 after SIGHUP")
    wait_for(lambda: "reopened" in d.stderr(), 10, "the log to be reopened")

    append(d.log, 5, 7)
    assert d.wait_lines(12)["lines"] == 12
    # Past a safety check and a few ticks: nothing is read twice. The check runs at the first tick
    # 2 s after the last one, so within any 3 ticks; each tick ends by publishing a snapshot.
    d.snapshots(3)
    status = d.status()
    assert (status["lines"], status["parsed"], status["threshold"]) == (12, 12, 1.0)
    assert d.stop() == 0


def test_sighup_with_a_broken_config_keeps_running_on_the_old_one(
        logmond: Callable[..., Logmond], short_tmp: Path) -> None:
    cfg = short_tmp / "logmond.toml"
    write_config(cfg, "threshold = 7\n")
    d = logmond("--config", str(cfg), "--from-start")
    append(d.log, 0, 3)
    d.start()
    d.wait_lines(3)
    write_config(cfg, "threshold = -1\n")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload failed" in d.stderr(), 10, "the reload error on stderr")
    append(d.log, 3, 2)
    status = d.wait_lines(5)
    assert (status["lines"], status["threshold"]) == (5, 7.0)
    assert d.stop() == 0


# -- MemoryDenyWriteExecute=yes and NoNewPrivileges=yes ----------------------------------------

# PR_SET_MDWE(PR_MDWE_REFUSE_EXEC_GAIN) (Linux 6.3+) is what MemoryDenyWriteExecute=yes enforces
# (systemd does it with seccomp): no writable+executable mapping, no mprotect adding PROT_EXEC.
# It and PR_SET_NO_NEW_PRIVS survive execve, so the daemon runs as it would under the unit.
CONFINE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(77)
os.execv(sys.argv[1], sys.argv[1:])
"""


def test_logmond_runs_with_memory_deny_write_execute(logmond: Callable[..., Logmond], short_tmp: Path) -> None:
    probe = subprocess.run([sys.executable, "-c", CONFINE, "/bin/true"], timeout=30)
    if probe.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3)")
    assert probe.returncode == 0
    cfg = short_tmp / "logmond.toml"
    write_config(cfg, "threshold = 3\n")
    d = logmond("--config", str(cfg), "--from-start")
    append(d.log, 0, 4)
    stderr = open(d.stderr_path, "ab")
    d.proc = subprocess.Popen([sys.executable, "-c", CONFINE, *d.command()],
                              stdout=subprocess.DEVNULL, stderr=stderr)
    stderr.close()
    wait_for(d.answers, 15, "logmond to answer under MDWE")
    status = d.wait_lines(4)
    assert status["process"]["rss_bytes"] > 0
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reopened" in d.stderr(), 10, "the log to be reopened")
    append(d.log, 4, 1)
    d.wait_lines(5)
    assert d.stop() == 0, d.stderr()
