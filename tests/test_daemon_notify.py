"""Alert events leaving a real logmond: exec hooks (a real script, a hook that hangs) and a real
Prometheus Alertmanager (fired, resolved, down and back, and after a restart of logmond)."""
from __future__ import annotations

import json
import os
import signal
import socket
import stat
from pathlib import Path

from conftest import T0, wait_for
from servers import Alertmanager, require
from test_daemon_rules import ERRORS, append, rules_by_name, write_config

RECORDER = """#!/bin/sh
# Records what logmond hands a hook: its arguments, environment and stdin.
out="$1"
env | grep '^LOGMON_' | sort > "$out.env.tmp"
cat > "$out.json.tmp"
mv "$out.env.tmp" "$out.env"
mv "$out.json.tmp" "$out.json"
"""


def script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def listed(am: Alertmanager, rule: str) -> dict | None:
    found = [a for a in am.alerts() if a["labels"]["alertname"] == rule]
    return found[0] if found else None


def test_a_hook_gets_the_event_and_a_hanging_one_is_killed_while_lines_keep_being_counted(logmond, short_tmp):
    record = script(short_tmp / "record.sh", RECORDER)
    hang = script(short_tmp / "hang.sh", "#!/bin/sh\nexec sleep 60\n")
    out = short_tmp / "event"
    cfg = short_tmp / "logmond.toml"
    write_config(cfg, ERRORS + f'''
[[notify]]
command = ["{record}", "{out}"]
on = ["alert"]
rules = ["api_errors"]

[[notify]]
command = ["{hang}"]
timeout = 1.5
''')
    d = logmond("--config", str(cfg), "--from-start", "--lateness", "0")
    append(d.log, 0, 12, status=503)
    d.start()
    wait_for(lambda: (out.with_suffix(".json")).exists(), 15, "the hook to record the alert")
    event = json.loads(out.with_suffix(".json").read_text())
    assert (event["type"], event["rule"], event["at"], event["severity"]) == ("alert", "api_errors", T0, "critical")
    assert event["message"] == "api_errors generated an alert - status_share = 100.00%, triggered at 2019-02-07T21:10:00Z"
    env = dict(line.split("=", 1) for line in out.with_suffix(".env").read_text().splitlines())
    assert env == {"LOGMON_EVENT": "alert", "LOGMON_RULE": "api_errors", "LOGMON_SEVERITY": "critical",
                   "LOGMON_METRIC": "status_share",
                   "LOGMON_VALUE": "1.0", "LOGMON_THRESHOLD": "0.5", "LOGMON_AT": "2019-02-07T21:10:00Z",
                   "LOGMON_MESSAGE": event["message"], "LOGMON_HOST": socket.gethostname(),
                   "LOGMON_SECTION": "/api"}
    # The hanging hook runs for the alert: lines are counted meanwhile, and it is killed at 1.5 s.
    append(d.log, 12, 50, status=503)
    assert d.wait_lines(62, timeout=10)["lines"] == 62
    wait_for(lambda: "killed after" in d.stderr(), 15, "the hanging hook to be killed at its timeout")
    assert str(hang) in next(line for line in d.stderr().splitlines() if "killed after" in line)
    hooks = d.status()["notify"]["hooks"]
    assert (hooks["count"], hooks["started"], hooks["killed"], hooks["dropped"]) == (2, 2, 1, 0), hooks
    assert d.status()["notify"]["alertmanager"] is None
    assert d.stop() == 0


def test_a_hook_that_is_not_a_program_is_refused_at_start(logmond, short_tmp):
    from test_daemon_config import assert_refused, run_logmond
    cfg = short_tmp / "logmond.toml"
    cfg.write_text(f'[[notify]]\ncommand = ["{short_tmp / "nope"}"]\n')
    code, err = run_logmond("--config", cfg, "--file", short_tmp / "access.log", "--socket", short_tmp / "s.sock",
                            "--state-dir", short_tmp / "state")
    assert_refused(code, err, "[[notify]] #1", str(short_tmp / "nope"))


def test_alertmanager_lists_the_alert_resolves_it_gets_it_after_being_down_and_after_a_restart(logmond, short_tmp):
    require("prometheus-alertmanager")
    am = Alertmanager(short_tmp / "am").start()
    try:
        cfg = short_tmp / "logmond.toml"
        write_config(cfg, ERRORS + f'\n[alertmanager]\nurl = "{am.url}"\n')
        d = logmond("--config", str(cfg), "--from-start", "--lateness", "0")
        append(d.log, 0, 12, status=503)
        d.start()
        alert = wait_for(lambda: listed(am, "api_errors"), 15, "Alertmanager to list the alert")
        assert alert["labels"] == {"alertname": "api_errors", "severity": "critical", "instance": socket.gethostname(),
                                   "job": "logmond", "section": "/api"}
        assert alert["annotations"]["summary"] == ("api_errors generated an alert - status_share = 100.00%, "
                                                   "triggered at 2019-02-07T21:10:00Z")
        assert alert["startsAt"].startswith("2019-02-07T21:10:00")

        # 200s from T0+12: (t-5, t] holds 2 of 5 errors at T0+14, at or below 0.5: recovered.
        append(d.log, 12, 19)
        wait_for(lambda: not rules_by_name(d.status())["api_errors"]["active"], 15, "the rule to recover")
        wait_for(lambda: listed(am, "api_errors") is None, 15, "Alertmanager to resolve the alert")

        # Alertmanager down while the rule fires again (at T0+33): it gets the alert once back.
        am.stop()
        append(d.log, 31, 15, status=503)
        wait_for(lambda: rules_by_name(d.status())["api_errors"]["active"], 15, "the rule to fire again")
        wait_for(lambda: "cannot post alerts" in d.stderr(), 15, "the failed post to be logged")
        told = d.status()["notify"]["alertmanager"]
        assert (told["url"], told["firing"], told["pending"]) == (am.url, ["api_errors"], 1)
        assert "Connection refused" in told["last_error"], told
        am.start()
        again = wait_for(lambda: listed(am, "api_errors"), 20, "Alertmanager, back, to get the alert")
        assert again["startsAt"].startswith("2019-02-07T21:10:33")

        # logmond restarted while it fires, Alertmanager restarted empty: sent again from the state.
        assert d.stop() == 0
        am.stop()
        am.start()
        assert listed(am, "api_errors") is None
        d.start()
        back = wait_for(lambda: listed(am, "api_errors"), 15, "the firing alert sent again after a restart")
        assert back["startsAt"].startswith("2019-02-07T21:10:33")

        # A reload that changes the firing rule: what it fired is no longer watched, so resolved.
        write_config(cfg, ERRORS.replace("above = 0.5", "above = 0.9") + f'\n[alertmanager]\nurl = "{am.url}"\n')
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: listed(am, "api_errors") is None, 15, "the changed rule's alert to be resolved")
        assert d.stop() == 0
    finally:
        am.stop()
    assert not any(line.startswith("Traceback") for line in d.stderr().splitlines())
    assert os.path.exists(d.state / "logmond.sqlite3")
