"""Small pure pieces of the shell: path resolution, the live clock, the checkpoint file, config."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import msgpack
import pytest

from logmond import checkpoint
from logmond.clock import LiveClock
from logmond.config import load
from logmond.core.errors import OperatorError
from logmond.notify import Notifier
from shared.paths import socket_path, state_dir


def test_socket_path_resolution_order():
    env = {"LOGMOND_SOCKET": "/e.sock", "XDG_RUNTIME_DIR": "/run/user/1000"}
    assert socket_path("/f.sock", env, 1000) == "/f.sock"
    assert socket_path(None, env, 1000) == "/e.sock"
    assert socket_path(None, {}, 0) == "/run/logmond/logmond.sock"
    assert socket_path(None, {"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000) == "/run/user/1000/logmond.sock"
    assert socket_path(None, {}, 1000) == "/tmp/logmond-1000/logmond.sock"


def test_state_dir_resolution_order():
    assert state_dir("/s", {}, 0) == "/s"
    assert state_dir(None, {}, 0) == "/var/lib/logmond"
    assert state_dir(None, {"XDG_STATE_HOME": "/x"}, 1000) == "/x/logmond"
    assert state_dir(None, {"HOME": "/home/u"}, 1000) == "/home/u/.local/state/logmond"


def test_live_clock_follows_the_wall_from_the_newest_line():
    clock = LiveClock()
    assert clock.now(1000.0) is None
    clock.observe(500, 1000.0)          # a backlog: its lines are old
    assert clock.now(1010.5) == 510
    clock.observe(995, 1000.2)          # the first live line corrects the offset
    assert clock.now(1003.2) == 998


def test_a_0_1_checkpoint_loads_and_a_corrupt_one_is_kept_aside(tmp_path: Path, caplog):
    (tmp_path / checkpoint.NAME).write_bytes(msgpack.packb({"version": 1, "positions": [], "n": 3}))
    assert checkpoint.load(str(tmp_path)) == {"version": checkpoint.FORMAT_VERSION, "positions": [], "n": 3}
    (tmp_path / checkpoint.NAME).write_bytes(b"\xc1 not msgpack")
    assert checkpoint.load(str(tmp_path)) is None
    assert not (tmp_path / checkpoint.NAME).exists()
    assert len(list(tmp_path.glob("checkpoint.msgpack.bad-*"))) == 1
    assert "corrupt" in caplog.text
    assert checkpoint.load(str(tmp_path)) is None


def test_notifier_reads_systemd_environment():
    assert not Notifier({}).enabled and Notifier({}).watchdog_interval is None
    n = Notifier({"NOTIFY_SOCKET": "@abstract", "WATCHDOG_USEC": "30000000"})
    assert n.enabled and n.watchdog_interval == 15.0


def test_config_file(tmp_path: Path):
    cfg = tmp_path / "logmond.toml"
    cfg.write_text('file = "/var/log/x.log"\nthreshold = 0.1\nalert_window = 60\nfrom_start = true\n')
    assert load(str(cfg)) == (str(cfg), {"file": "/var/log/x.log", "from_start": True,
                                         "threshold": Fraction(1, 10), "alert_window": 60})
    for text, words in (("bogus = 1", "unknown key 'bogus'"), ("alert_window = '60'", "'alert_window' must be"),
                        ("alert_window = 0", "'alert_window' must be from 1 to 86400"), ("from_start = 1", "'from_start'"),
                        ("threshold = -1", "'threshold' must be >= 0"), ("[x", "not valid TOML")):
        cfg.write_text(text + "\n")
        with pytest.raises(OperatorError, match=words):
            load(str(cfg))
    with pytest.raises(OperatorError, match="cannot read config"):
        load(str(tmp_path / "missing.toml"))
