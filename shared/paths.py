"""Where the socket and the state live: one resolution for logmond and logmonctl alike."""
from __future__ import annotations

import os
from typing import Mapping

SOCKET_NAME = "logmond.sock"
# The system service's socket (systemd/logmond.service passes it), also root's default.
SERVICE_SOCKET = f"/run/logmond/{SOCKET_NAME}"


def socket_path(flag: str | None = None, env: Mapping[str, str] | None = None, uid: int | None = None) -> str:
    """--socket > $LOGMOND_SOCKET > /run/logmond (root) > $XDG_RUNTIME_DIR > /tmp/logmond-$UID."""
    env = os.environ if env is None else env
    uid = os.geteuid() if uid is None else uid
    if flag:
        return flag
    if env.get("LOGMOND_SOCKET"):
        return env["LOGMOND_SOCKET"]
    if uid == 0:
        return SERVICE_SOCKET
    if env.get("XDG_RUNTIME_DIR"):
        return os.path.join(env["XDG_RUNTIME_DIR"], SOCKET_NAME)
    return f"/tmp/logmond-{uid}/{SOCKET_NAME}"


def default_socket(env: Mapping[str, str] | None = None, uid: int | None = None) -> str:
    """The socket this user gets when nothing names one: no --socket, no $LOGMOND_SOCKET."""
    env = os.environ if env is None else env
    return socket_path(None, {k: v for k, v in env.items() if k != "LOGMOND_SOCKET"}, uid)


def state_dir(flag: str | None = None, env: Mapping[str, str] | None = None, uid: int | None = None) -> str:
    """--state-dir > /var/lib/logmond (root) > $XDG_STATE_HOME/logmond > ~/.local/state/logmond."""
    env = os.environ if env is None else env
    uid = os.geteuid() if uid is None else uid
    if flag:
        return flag
    if uid == 0:
        return "/var/lib/logmond"
    base = env.get("XDG_STATE_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "logmond")
