"""[[rule]] rules in a real logmond: status, check, alerts, refusals at start, and SIGHUP."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import T0, csv_line, wait_for
from test_daemon_config import assert_refused, run_logmond

ERRORS = '''
[[rule]]
name = "api_errors"
metric = "status_share"
status = "5xx"
section = "/api"
window = 5
above = 0.5
severity = "critical"

[[rule]]
name = "flood"
metric = "rate"
window = 5
above = 1000
'''


def write_config(path: Path, text: str) -> None:
    """Atomically, as an editor or config manager would: the daemon never reads half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def append(log: Path, start: int, count: int, status: int = 200, path: str = "/api/user") -> None:
    with open(log, "a") as f:
        f.writelines(csv_line(T0 + start + i, start + i, path, status) for i in range(count))


def ctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "logmonctl", *args], capture_output=True, text=True, timeout=20)


def rules_by_name(status: dict) -> dict[str, dict]:
    return {r["name"]: r for r in status["rules"]}


def test_a_critical_rule_is_in_status_check_and_alerts(logmond, short_tmp):
    cfg = short_tmp / "logmond.toml"
    write_config(cfg, ERRORS)
    d = logmond("--config", str(cfg), "--from-start", "--lateness", "0")
    append(d.log, 0, 12, status=503)
    d.start()
    wait_for(lambda: rules_by_name(d.status())["api_errors"]["active"], 15, "api_errors to fire")
    rules = rules_by_name(d.status())
    assert list(rules) == ["high_traffic", "api_errors", "flood"]
    assert {k: rules["api_errors"][k] for k in ("metric", "since", "value", "threshold", "severity", "section")} == \
        {"metric": "status_share", "since": T0, "value": 1.0, "threshold": 0.5, "severity": "critical",
         "section": "/api"}
    assert rules["flood"]["active"] is False and rules["flood"]["severity"] == "warning"

    check = ctl("check", "--socket", d.socket)
    assert check.returncode == 2, check.stdout
    assert check.stdout.startswith("LOGMON CRITICAL - api_errors FIRING since 2019-02-07T21:10:00Z "
                                   "(status_share 100.00%, > 50.00% fires, critical); "), check.stdout
    assert re.search(r" api_errors=100%;;50 flood=[0-9.]+;1000;\n$", check.stdout), check.stdout

    alerts = ctl("alerts", "--socket", d.socket)
    assert alerts.stdout.splitlines() == [
        "[critical api_errors] api_errors generated an alert - status_share = 100.00%, triggered at 2019-02-07T21:10:00Z"]
    status = ctl("status", "--socket", d.socket)
    assert "rule      api_errors FIRING since 2019-02-07T21:10:00Z" in status.stdout, status.stdout
    assert d.stop() == 0


def test_only_warning_rules_firing_is_a_warning(logmond, short_tmp):
    cfg = short_tmp / "logmond.toml"
    write_config(cfg, ERRORS.replace('severity = "critical"', 'severity = "warning"'))
    d = logmond("--config", str(cfg), "--from-start", "--lateness", "0")
    append(d.log, 0, 12, status=503)
    d.start()
    wait_for(lambda: rules_by_name(d.status())["api_errors"]["active"], 15, "api_errors to fire")
    check = ctl("check", "--socket", d.socket)
    assert check.returncode == 1 and check.stdout.startswith("LOGMON WARNING - api_errors FIRING"), check.stdout
    assert " api_errors=100%;50;" in check.stdout
    assert d.stop() == 0


RULES_V1 = '''
[[rule]]
name = "a"
metric = "rate"
window = 5
above = 0.5

[[rule]]
name = "b"
metric = "rate"
window = 5
above = 0.5
'''

# a as it was, b with another bound, c new.
RULES_V2 = RULES_V1[:RULES_V1.rindex("above = 0.5")] + "above = 0.6\n" + '''
[[rule]]
name = "c"
metric = "rate"
window = 5
above = 0.5
'''


def test_sighup_keeps_an_unchanged_rule_restarts_a_changed_one_adds_one_and_refuses_a_broken_file(
        logmond, short_tmp):
    cfg = short_tmp / "logmond.toml"
    write_config(cfg, RULES_V1)
    d = logmond("--config", str(cfg), "--from-start", "--lateness", "0")
    append(d.log, 0, 10)
    d.start()
    wait_for(lambda: all(r["active"] for r in d.status()["rules"][1:]), 15, "a and b to fire")
    since = rules_by_name(d.status())["a"]["since"]

    write_config(cfg, RULES_V2)
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "rule c added" in d.stderr(), 10, "the reload to be logged")
    assert "rule b changed, its state starts afresh" in d.stderr()
    rules = rules_by_name(d.status())
    assert list(rules) == ["high_traffic", "a", "b", "c"]
    assert (rules["a"]["active"], rules["a"]["since"]) == (True, since)
    assert (rules["b"]["threshold"], rules["c"]["threshold"]) == (0.6, 0.5)
    # The restarted and the new rule see the lines from now on: both fire on the next ones.
    append(d.log, 10, 10)
    wait_for(lambda: all(r["active"] for r in d.status()["rules"][1:]), 15, "b and c to fire again")
    assert rules_by_name(d.status())["b"]["since"] > since

    text = cfg.read_text()
    write_config(cfg, text + '\n[[rule]]\nname = "d"\nmetric = "rate"\nabove = 1\nabov = 2\n')
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload failed" in d.stderr(), 10, "the refusal to be logged")
    refusal = next(line for line in d.stderr().splitlines() if "reload failed" in line)
    assert "rule 'd': unknown key 'abov'" in refusal
    assert list(rules_by_name(d.status())) == ["high_traffic", "a", "b", "c"]
    assert d.stop() == 0


@pytest.mark.parametrize("table, needle", [
    ('name = "x"\nmetric = "rate"\nabove = 1\nabov = 2', "rule 'x': unknown key 'abov'"),
    ('name = "x"\nmetric = "errors"\nabove = 1', "rule 'x': 'metric' must be one of"),
    ('name = "x"\nmetric = "status_share"\nstatus = "5xx"\nabove = 0.1\nrecover_below = 0.2',
     "rule 'x': 'recover_below' must be at or below 'above'"),
    ('name = "x"\nmetric = "latency"\nabove = 0.5', "rule 'x': metric latency needs a request time, and format "
                                                    "combined has none"),
])
def test_a_bad_rule_is_refused_at_start_with_one_line(short_tmp, table, needle):
    cfg = short_tmp / "bad.toml"
    cfg.write_text(f'format = "combined"\n[[rule]]\n{table}\n')
    code, err = run_logmond("--config", cfg, "--file", short_tmp / "access.log", "--socket", short_tmp / "s.sock",
                            "--state-dir", short_tmp / "state")
    assert_refused(code, err, needle, str(cfg))


def test_a_duplicate_rule_name_is_refused(short_tmp):
    cfg = short_tmp / "bad.toml"
    cfg.write_text('[[rule]]\nname = "x"\nmetric = "rate"\nabove = 1\n[[rule]]\nname = "x"\nmetric = "rate"\nbelow = 1\n')
    code, err = run_logmond("--config", cfg, "--file", short_tmp / "access.log", "--socket", short_tmp / "s.sock",
                            "--state-dir", short_tmp / "state")
    assert_refused(code, err, "rule 'x': 'name' is used by another rule")


def test_once_reads_rules_from_the_config_it_is_given(short_tmp):
    log, cfg = short_tmp / "access.log", short_tmp / "rules.toml"
    append(log, 0, 12, status=503)
    cfg.write_text(ERRORS)
    out = subprocess.run([sys.executable, "-m", "logmond", "--once", "--json", "--file", str(log), "--config", str(cfg)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    alerts = [e for e in map(json.loads, out.stdout.splitlines()) if e["type"] == "alert"]
    assert [(e["rule"], e["at"], e["value"]) for e in alerts] == [("api_errors", T0, 1.0)]
