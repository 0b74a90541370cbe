"""Real web servers writing real access logs, for tests: nginx, Apache and Caddy, each run in the
foreground with everything (config, pid file, error log, temp paths, access logs) inside one
directory that the test gives it, on 127.0.0.1 at a free port. And a real Prometheus
Alertmanager for logmond to post alerts to, in the same way (see Alertmanager, at the end).

    from servers import Nginx, Apache, Caddy, free_port, require, send_requests

    require("nginx")                       # skip (or, with CI=true, fail) when it is not installed
    logs = {"a.log": ("combined", None, None), "j.log": ("j", '{"s":"$status"}', "json")}
    with Nginx(tmp_dir, logs) as srv:      # started and accepting connections
        statuses = send_requests(srv.port, ["GET /ok", "POST /api/form", b"GET /a b HTTP/1.1\\r\\n\\r\\n"])
    srv.lines("a.log")                     # stopped: every request is in the files (list of bytes)

Each server answers a small fixed routing table, so that tests get known statuses without files:

    path            nginx                 Apache                  Caddy
    /ok             200 "ok" (any method) 200 (file)              200 "ok"
    /api/...        200 (any method)      200 for GET of /api/x,  200 (any method)
                                          /api/user/1, /api/form;
                                          POST too (static file)
    /missing        404 (no such file)    404 (no such file)      404
    /fail           503 (return 503)      503 (Redirect 503)      503
    /slow, /slow/N  proxied to a Python server in this process that sleeps N ms (default 200):
                    real $request_time and $upstream_response_time (nginx only)
    /.harness-status  nginx's stub_status, not logged: used by Nginx.stop() to drain
    anything else   404                   404                     404

Requests a server cannot parse (a space in the target, a TLS ClientHello, a bare "-") get 400 from
all three; nginx and Apache log them, Caddy (Go's net/http) does not.

Apache run as root serves as www-data: give it a directory others can search (see Apache).
"""
from __future__ import annotations

import http.server
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Mapping, Self
from urllib.parse import urlsplit

import pytest

LOOPBACK = "127.0.0.1"
# Where Debian puts the binaries; PATH may lack the sbin directories for a non-root user.
EXTRA_PATH = ("/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")
USER_AGENT = "logmon-test/1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


# -- helpers -------------------------------------------------------------------------------------

def which(binary: str) -> str | None:
    """The binary's path, looking in PATH and then in the sbin directories."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *EXTRA_PATH])
    return shutil.which(binary, path=path)


# Binary -> the Debian package that installs it, for require()'s reason (.ci/run installs them).
DEBIAN_PACKAGES = {"nginx": "nginx", "apache2": "apache2", "caddy": "caddy",
                   "prometheus-alertmanager": "prometheus-alertmanager"}


def require(binary: str) -> str:
    """The binary's path; when it is missing, skip the test with a reason naming the package to
    install, except under CI=true where a missing server is a failure (CI must install it)."""
    found = which(binary)
    if found:
        return found
    package = DEBIAN_PACKAGES.get(binary)
    how = f" (Debian: apt-get install -y {package})" if package else ""
    reason = f"{binary} is not installed{how}; the tests against the real server need it"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)
    raise AssertionError("unreachable")  # pytest.skip raises


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_accepts(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def request(method: str, target: str, *, port: int | None = None, body: bytes | None = None,
            headers: Mapping[str, str] | None = None, version: str = "HTTP/1.1") -> bytes:
    """A whole HTTP/1.x request with Host, User-Agent and Connection: close (and Content-Length and
    a small body for POST/PUT unless one is given). The target is sent as it is, spaces and all."""
    if body is None and method in ("POST", "PUT", "PATCH"):
        body = b"a=1&b=2"
    hdrs = {"Host": f"{LOOPBACK}:{port}" if port else LOOPBACK, "User-Agent": USER_AGENT,
            "Connection": "close"}
    if body is not None:
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        hdrs["Content-Length"] = str(len(body))
    hdrs.update(headers or {})
    head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    return head.encode("latin-1") + b"\r\n" + (body or b"")


# A TLS 1.0 record header + the start of a ClientHello: what a browser sends to http://host:443/.
TLS_CLIENT_HELLO = (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(32))
                    + b"\x00\x00\x02\x00\x2f\x01\x00")

_STATUS = re.compile(rb"HTTP/\d(?:\.\d)? (\d{3})")


def send_request(port: int, req: str | bytes, timeout: float = 5.0) -> tuple[int | None, bytes]:
    """One exchange on its own loopback connection: (status or None, raw response bytes).

    `req` is either bytes, sent exactly as given, or a str "METHOD TARGET" expanded by request()
    (so "GET /a b" sends the request line "GET /a b HTTP/1.1"). The response is read to EOF, so
    the server has finished with the request when this returns. Every socket operation has a
    timeout and the whole exchange is bounded by `timeout`; on a timeout, or when the server
    closes without a status line, the status is None."""
    if isinstance(req, str):
        method, _, target = req.partition(" ")
        data = request(method, target, port=port)
    else:
        data = req
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
            s.sendall(data)
            while (left := deadline - time.monotonic()) > 0:
                s.settimeout(left)
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except (socket.timeout, ConnectionResetError, BrokenPipeError):
        pass
    raw = b"".join(chunks)
    m = _STATUS.match(raw)
    return (int(m.group(1)) if m else None), raw


def send_requests(port: int, requests: Iterable[str | bytes], timeout: float = 5.0) -> list[int | None]:
    """Send each request on its own connection, one after the other; the statuses received
    (None where the server closed, or timed out, without a status line). See send_request."""
    return [send_request(port, r, timeout)[0] for r in requests]


# -- a slow upstream for nginx's proxy_pass ------------------------------------------------------

class SlowUpstream:
    """A tiny HTTP server thread in this process: GET/POST /slow/N (or /slow?ms=N, or /slow for
    DEFAULT_MS) sleeps N milliseconds (at most 5 s) and answers 200 "slept N"."""

    DEFAULT_MS = 200
    MAX_MS = 5000

    def __init__(self) -> None:
        outer = self
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:
                outer.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(min(length, 1 << 20))
                ms = min(outer.delay_ms(self.path), outer.MAX_MS)
                time.sleep(ms / 1000)
                body = f"slept {ms}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

        self.server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="slow-upstream", daemon=True)

    @classmethod
    def delay_ms(cls, path: str) -> int:
        parts = urlsplit(path)
        m = re.search(r"(?:^|&)ms=(\d+)", parts.query) or re.match(r"/slow/(\d+)", parts.path)
        return int(m.group(1)) if m else cls.DEFAULT_MS

    def start(self) -> SlowUpstream:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.thread.join(timeout=5)
        self.server.server_close()


# -- the servers ---------------------------------------------------------------------------------

class ServerError(AssertionError):
    pass


class _Process:
    """What every server of the harness does with its process: kill its group, and run as a
    context manager (started on entry, stopped on exit). Subclasses set `proc` and define
    start() and stop()."""

    proc: subprocess.Popen | None

    @staticmethod
    def _killpg(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _kill(self) -> None:
        if self.proc is not None:
            self._killpg(self.proc)
            self.proc.wait(timeout=STOP_TIMEOUT)
            self.proc = None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> int | None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(_Process):
    """Common life cycle: write the config, Popen the foreground server (stdout+stderr to
    DIR/<name>.out), wait until its pid file holds its pid and the port accepts a connection
    (failing with the server's output and error log if it exits first or takes too long); stop
    it by signal, then SIGKILL if it has not exited after STOP_TIMEOUT. A free port found taken
    by the time the server binds it is retried twice on another. A context manager: enter
    starts, exit stops."""

    name = "server"
    binary = ""
    GRACEFUL = signal.SIGTERM
    FAST = signal.SIGTERM
    graceful_stop = True
    # a startup failure mentioning one of these is retried on another port (the free port was taken)
    PORT_TAKEN = ("Address already in use", "address already in use")

    def __init__(self, directory: str | os.PathLike, port: int | None = None) -> None:
        self.dir = Path(directory).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self._fixed_port = port is not None
        self.proc: subprocess.Popen | None = None
        self.out_path = self.dir / f"{self.name}.out"
        self.error_log = self.dir / "error.log"
        self.pid_file = self.dir / f"{self.name}.pid"
        self.logs: dict[str, Path] = {}

    # subclasses: write_config() and command(); env() if needed
    def write_config(self) -> None:
        raise NotImplementedError

    def command(self, exe: str) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self) -> _Server:
        exe = which(self.binary)
        if exe is None:
            raise ServerError(f"{self.binary} is not installed (call require() first)")
        for attempt in range(3):
            self.write_config()
            with open(self.out_path, "ab") as out:
                self.proc = subprocess.Popen(self.command(exe), stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=subprocess.STDOUT, env=self.env(), cwd=self.dir,
                                             start_new_session=True)
            try:
                self._wait_ready()
                return self
            except ServerError:
                retry = (not self._fixed_port and self.proc.poll() is not None
                         and any(t in self.diagnostics() for t in self.PORT_TAKEN) and attempt < 2)
                self._kill()
                if not retry:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ServerError(f"{self.name} exited with {code} while starting:\n{self.diagnostics()}")
            # Apache binds before it writes its pid file: wait for both
            if self.pid() == self.proc.pid and port_accepts(self.port):
                return
            if time.monotonic() > deadline:
                raise ServerError(f"{self.name} did not accept connections on {LOOPBACK}:{self.port} "
                                  f"within {START_TIMEOUT}s:\n{self.diagnostics()}")
            time.sleep(0.02)

    def diagnostics(self) -> str:
        """The server's own output and error log, for failure messages."""
        parts = []
        for p in dict.fromkeys((self.out_path, self.error_log)):
            if p.exists() and p.stat().st_size:
                parts.append(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts) or "(no output)"

    def pid(self) -> int | None:
        """The pid in the server's pid file (None before it has written one)."""
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, graceful: bool | None = None) -> int | None:
        """Stop the server (again is harmless) by signalling its pid, and wait for it to exit; its
        exit code. `graceful` picks the class's GRACEFUL or FAST signal (None: its default). Once
        it has exited, every request it answered is in the access logs: all three write each line
        with one write(2), unbuffered, before they close the connection, and send_request reads
        each response to EOF."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        sig = self.GRACEFUL if (self.graceful_stop if graceful is None else graceful) else self.FAST
        if proc.poll() is None:
            # the pid file is the server's own word for its pid; it must be the process we started
            pid = self.pid()
            if pid != proc.pid:
                raise_after = f"{self.name}: pid file says {pid}, but we started {proc.pid}"
            else:
                raise_after = None
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._killpg(proc)
                proc.wait(timeout=STOP_TIMEOUT)
                raise ServerError(f"{self.name} did not stop on {sig.name} within {STOP_TIMEOUT}s; "
                                  f"killed:\n{self.diagnostics()}")
            finally:
                self._killpg(proc)  # leftovers (Apache's children), if any
            if raise_after:
                raise ServerError(raise_after)
        return proc.returncode

    # reading the logs
    def log_path(self, name: str) -> Path:
        return self.logs[name]

    def raw(self, name: str) -> bytes:
        p = self.logs[name]
        return p.read_bytes() if p.exists() else b""

    def lines(self, name: str) -> list[bytes]:
        """The access log's lines as bytes, without the newlines (nginx's escape=json writes bytes
        as they came, so a line need not be UTF-8)."""
        return self.raw(name).splitlines()

    def text_lines(self, name: str) -> list[str]:
        return [line.decode("utf-8", "backslashreplace") for line in self.lines(name)]


def _nginx_quote(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Nginx(_Server):
    """nginx in one foreground process (`daemon off; master_process off`), everything under DIR:
    `nginx -p DIR/ -e DIR/error.log -c DIR/nginx.conf`. Its /slow location proxies to a
    SlowUpstream thread that it starts and stops with itself.

    Stopping: in single-process mode SIGQUIT is not graceful, nginx exits at its next event-loop
    turn, dropping open connections unlogged. That matters: after a 400 (unparsed bytes left in
    its buffer) nginx sends the response, shuts its side (the client sees EOF) and only logs when
    the client's close arrives (lingering close). So stop() first drains: it polls stub_status on
    STATUS_PATH (not logged) until that poll is the only connection left, for up to DRAIN_TIMEOUT,
    then sends SIGQUIT. nginx writes access logs unbuffered, so they are complete then.

    `logs`: {filename: (format name, log_format body or None for the built-in "combined",
    escape None | "default" | "json" | "none")}; every file gets the same requests. The body is
    nginx's text as it should see it (quoting for the config file is done here).
    `server_name`: "" (nginx's default) leaves $host empty for a request it cannot parse, as a
    real catch-all server does; give one and such a request's $host is that name."""

    name = "nginx"
    binary = "nginx"
    GRACEFUL = signal.SIGQUIT  # graceful only with a master process; see drain()
    FAST = signal.SIGTERM
    ESCAPES = (None, "default", "json", "none")
    STATUS_PATH = "/.harness-status"
    DRAIN_TIMEOUT = 3.0

    def __init__(self, directory: str | os.PathLike,
                 logs: Mapping[str, tuple[str, str | None, str | None]] | None = None,
                 port: int | None = None, server_name: str = "") -> None:
        super().__init__(directory, port)
        self.server_name = server_name
        self.log_defs = dict(logs if logs is not None else {"access.log": ("combined", None, None)})
        self.formats: dict[str, tuple[str, str | None]] = {}
        for filename, (fmt, body, escape) in self.log_defs.items():
            if escape not in self.ESCAPES:
                raise ValueError(f"{filename}: escape must be one of {self.ESCAPES}, not {escape!r}")
            if body is None:
                if fmt != "combined" or escape is not None:
                    raise ValueError(f"{filename}: only the built-in 'combined' has no body")
                continue
            if fmt == "combined":
                raise ValueError(f"{filename}: 'combined' is built in; give another name")
            if self.formats.setdefault(fmt, (body, escape)) != (body, escape):
                raise ValueError(f"log_format {fmt} given two different definitions")
        self.logs = {f: self.dir / f for f in self.log_defs}
        self.upstream: SlowUpstream | None = None
        self.conf = self.dir / "nginx.conf"

    def start(self) -> Nginx:
        self.upstream = SlowUpstream().start()
        try:
            super().start()
        except BaseException:
            self.upstream.stop()
            self.upstream = None
            raise
        return self

    def connections(self) -> int | None:
        """nginx's count of open client connections, this poll's included (None if no answer)."""
        status, raw = send_request(self.port, f"GET {self.STATUS_PATH}", timeout=2.0)
        m = re.search(rb"Active connections: (\d+)", raw)
        return int(m.group(1)) if status == 200 and m else None

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every other client connection is closed (so logged); False on timeout."""
        deadline = time.monotonic() + (self.DRAIN_TIMEOUT if timeout is None else timeout)
        while True:
            n = self.connections()
            if n is None or n <= 1:
                return n is not None
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)

    def stop(self, graceful: bool | None = None) -> int | None:
        """Drain (unless graceful=False), then SIGQUIT (SIGTERM with graceful=False)."""
        try:
            if self.proc is not None and self.proc.poll() is None and graceful is not False:
                self.drain()
            return super().stop(graceful)
        finally:
            if self.upstream is not None:
                self.upstream.stop()
                self.upstream = None

    def write_config(self) -> None:
        d = self.dir
        (d / "html").mkdir(exist_ok=True)
        (d / "tmp").mkdir(exist_ok=True)
        assert self.upstream is not None
        formats = "".join(
            f"    log_format {name}{' escape=' + esc if esc else ''} {_nginx_quote(body)};\n"
            for name, (body, esc) in self.formats.items())
        access = "".join(f"        access_log {self.logs[f]} {fmt};\n"
                         for f, (fmt, _, _) in self.log_defs.items())
        temp = "".join(f"    {kind}_temp_path {d}/tmp/{kind};\n"
                       for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        self.conf.write_text(f"""\
daemon off;
master_process off;
worker_processes 1;
pid {self.pid_file};
error_log {self.error_log} notice;
events {{ worker_connections 64; }}
http {{
{temp}    default_type text/plain;
    access_log off;
{formats}    server {{
        listen {LOOPBACK}:{self.port};
        server_name "{self.server_name}";
{access}        root {d}/html;
        location = /ok {{ return 200 "ok\\n"; }}
        location /api/ {{ return 200 "api\\n"; }}
        location = /fail {{ return 503; }}
        location = {self.STATUS_PATH} {{ stub_status; access_log off; }}
        location /slow {{
            proxy_pass http://{LOOPBACK}:{self.upstream.port};
            proxy_read_timeout 10s;
        }}
    }}
}}
""")

    def command(self, exe: str) -> list[str]:
        return [exe, "-p", f"{self.dir}/", "-e", str(self.error_log), "-c", str(self.conf)]


def _apache_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Apache(_Server):
    """Apache 2.4 (event MPM) in the foreground: `apache2 -f DIR/httpd.conf -DFOREGROUND` with a
    self-contained config (ServerRoot, PidFile, ErrorLog, runtime dir, mutexes, DocumentRoot all
    under DIR). BufferedLogs is off, so each line is written when its request ends, before the
    connection is closed. Stopped with SIGTERM (children killed at once: fine once every response
    has been read); stop(graceful=True) sends SIGWINCH (graceful-stop), which lets requests in
    flight finish but takes about a second (the parent's maintenance tick).

    `logs`: {filename: LogFormat string as Apache should see it (quoting for the config file is
    done here), or one of the nicknames common/combined/vhost_combined}. `ServerName` is
    localhost:PORT, so %v is localhost and %p the port listened on.

    Run as root, Apache serves as User/Group www-data (or nobody), which must be able to read
    DIR: the DIR and its parents must be searchable by others (a directory made with mkdtemp is
    0700: chmod it 0755; pytest's tmp_path, under a 0700 /tmp/pytest-of-root, will not do)."""

    name = "apache"
    binary = "apache2"
    GRACEFUL = signal.SIGWINCH  # graceful-stop: in-flight requests finish; takes about 1 s
    FAST = signal.SIGTERM       # about 30 ms; requests already answered are logged
    graceful_stop = False
    MODULES = "/usr/lib/apache2/modules"
    NICKNAMES = {
        "common": '%h %l %u %t "%r" %>s %O',
        "combined": '%h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"',
        "vhost_combined": '%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"',
    }
    FILES = {"ok": "ok\n", "api/x": "x\n", "api/user/1": "user 1\n", "api/form": "form\n"}

    def __init__(self, directory: str | os.PathLike, logs: Mapping[str, str] | None = None,
                 port: int | None = None) -> None:
        super().__init__(directory, port)
        self.log_defs = dict(logs if logs is not None else {"access.log": "combined"})
        self.logs = {f: self.dir / f for f in self.log_defs}
        self.conf = self.dir / "httpd.conf"
        self.docroot = self.dir / "htdocs"

    def run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None  # User/Group only matter to root
        for user in ("www-data", "nobody"):
            try:
                pwd.getpwnam(user)
                return user
            except KeyError:
                continue
        raise ServerError("Apache run as root needs a user to serve as: no www-data nor nobody")

    def _check_readable(self, user: str) -> None:
        ent = pwd.getpwnam(user)
        for p in [self.dir, *self.dir.parents]:
            st = p.stat()
            if st.st_uid != ent.pw_uid and not st.st_mode & 0o001:
                raise ServerError(f"Apache serves as {user}, who cannot enter {p} (mode "
                                  f"{st.st_mode & 0o777:o}): give it a directory searchable by others")

    def write_config(self) -> None:
        d = self.dir
        user = self.run_as()
        if user:
            self._check_readable(user)
        (d / "run").mkdir(exist_ok=True)
        for rel, content in self.FILES.items():
            f = self.docroot / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(content)
        modules = "".join(f"LoadModule {m}_module {self.MODULES}/mod_{m}.so\n"
                          for m in ("mpm_event", "authz_core", "dir", "mime", "alias"))
        nick = "".join(f"LogFormat {_apache_quote(v)} {k}\n" for k, v in self.NICKNAMES.items())
        custom = "".join(
            f"CustomLog {_apache_quote(str(self.logs[f]))} "
            f"{fmt if fmt in self.NICKNAMES else _apache_quote(fmt)}\n"
            for f, fmt in self.log_defs.items())
        who = f"User {user}\nGroup #{pwd.getpwnam(user).pw_gid}\n" if user else ""
        self.conf.write_text(f"""\
ServerRoot "{d}"
DefaultRuntimeDir "{d}/run"
PidFile "{self.pid_file}"
Mutex file:{d}/run default
ErrorLog "{self.error_log}"
LogLevel warn
{modules}Listen {LOOPBACK}:{self.port}
ServerName localhost:{self.port}
{who}StartServers 1
MinSpareThreads 5
MaxSpareThreads 10
ThreadsPerChild 5
MaxRequestWorkers 10
GracefulShutdownTimeout 5
KeepAlive Off
TypesConfig /etc/mime.types
DefaultType none
BufferedLogs Off
HostnameLookups Off
DocumentRoot "{self.docroot}"
DirectoryIndex index.html
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory "{self.docroot}">
    Require all granted
</Directory>
Redirect 503 /fail
{nick}{custom}""")

    def command(self, exe: str) -> list[str]:
        return [exe, "-f", str(self.conf), "-DFOREGROUND"]

    def env(self) -> dict[str, str]:
        # Debian's apache2 wrapper variables are not needed by this config; LANG keeps it quiet
        return {**os.environ, "LANG": "C"}


class Caddy(_Server):
    """Caddy 2 in the foreground: `caddy run --config DIR/Caddyfile --adapter caddyfile`, with
    `admin off`, `auto_https off`, storage under DIR and HOME/XDG_* pointed into DIR. Stopped with
    SIGTERM (graceful). One JSON access log, `access_log` (a file name in DIR)."""

    name = "caddy"
    binary = "caddy"
    GRACEFUL = signal.SIGTERM  # Caddy's graceful shutdown; SIGQUIT would skip cleanup
    FAST = signal.SIGTERM

    def __init__(self, directory: str | os.PathLike, access_log: str = "access.json",
                 port: int | None = None) -> None:
        super().__init__(directory, port)
        self.access_log = access_log
        self.logs = {access_log: self.dir / access_log}
        self.conf = self.dir / "Caddyfile"
        self.error_log = self.out_path  # Caddy's own log goes to stderr

    def write_config(self) -> None:
        d = self.dir
        for sub in ("home", "config", "data", "cache", "state", "storage"):
            (d / sub).mkdir(exist_ok=True)
        self.conf.write_text(f"""\
{{
\tadmin off
\tauto_https off
\tstorage file_system {d}/storage
}}

:{self.port} {{
\tbind {LOOPBACK}
\tlog {{
\t\toutput file {self.logs[self.access_log]} {{
\t\t\troll_disabled
\t\t}}
\t\tformat json
\t}}
\trespond /ok "ok" 200
\trespond /api/* "api" 200
\trespond /fail 503
\trespond 404
}}
""")

    def command(self, exe: str) -> list[str]:
        return [exe, "run", "--config", str(self.conf), "--adapter", "caddyfile",
                "--pidfile", str(self.pid_file)]

    def env(self) -> dict[str, str]:
        d = self.dir
        return {**os.environ, "HOME": f"{d}/home", "XDG_CONFIG_HOME": f"{d}/config",
                "XDG_DATA_HOME": f"{d}/data", "XDG_CACHE_HOME": f"{d}/cache",
                "XDG_STATE_HOME": f"{d}/state"}


# -- Alertmanager --------------------------------------------------------------------------------

class Alertmanager(_Process):
    """Prometheus Alertmanager 0.25 (Debian's prometheus-alertmanager) in the foreground on
    127.0.0.1 at a free port, with no cluster port, its config (DIR/alertmanager.yml), storage
    (DIR/data unless given) and output (DIR/alertmanager.out) in DIR. Its one route goes to a
    receiver "null" that notifies nobody, grouping after 1 s.

        require("prometheus-alertmanager")
        with Alertmanager(tmp_path) as am:     # started: GET /-/ready answers 200
            ...post alerts to am.url...
            am.alerts()                        # GET /api/v2/alerts: the active ones, parsed
            am.received()                      # {"firing": n, "resolved": m} posted alerts taken
            am.freeze(); am.thaw()             # SIGSTOP / SIGCONT: posts wait meanwhile

    Not a _Server: it writes no pid file, and it is ready when /-/ready says so, not when the port
    accepts. stop() sends SIGTERM to the pid it started (SIGKILL after STOP_TIMEOUT); start()
    again runs it on the same port with the same storage, so that a client's URL still holds.
    Alertmanager keeps silences there, not alerts: started again, it has none until they are
    posted again. A context manager: enter starts, exit stops."""

    name = "alertmanager"
    binary = "prometheus-alertmanager"
    CONFIG = """\
route:
  receiver: "null"
  group_wait: 1s
  group_interval: 1s
receivers:
  - name: "null"
"""
    # a startup failure saying this is retried on another port (the free port was taken meanwhile)
    PORT_TAKEN = "address already in use"

    def __init__(self, directory: str | os.PathLike, port: int | None = None,
                 storage: str | os.PathLike | None = None) -> None:
        self.dir = Path(directory).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self._fixed_port = port is not None
        self.storage = Path(storage).resolve() if storage is not None else self.dir / "data"
        self.config = self.dir / "alertmanager.yml"
        self.out_path = self.dir / f"{self.name}.out"
        self.proc: subprocess.Popen | None = None
        # no proxy from the environment: Alertmanager is on this machine's loopback
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def url(self) -> str:
        """The base URL, as `[alertmanager] url` takes it."""
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> Alertmanager:
        exe = which(self.binary)
        if exe is None:
            raise ServerError(f"{self.binary} is not installed (call require() first)")
        self.config.write_text(self.CONFIG)
        for attempt in range(3):
            command = [exe, f"--config.file={self.config}", f"--storage.path={self.storage}",
                       f"--web.listen-address={LOOPBACK}:{self.port}", "--cluster.listen-address="]
            with open(self.out_path, "ab") as out:
                self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=subprocess.STDOUT, cwd=self.dir, start_new_session=True)
            try:
                self._wait_ready()
            except ServerError:
                retry = (not self._fixed_port and self.proc.poll() is not None
                         and self.PORT_TAKEN in self.diagnostics() and attempt < 2)
                self._kill()
                if not retry:
                    raise
                self.port = free_port()
                continue
            self._fixed_port = True  # started again, it must answer at the same URL
            return self
        raise AssertionError("unreachable")

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ServerError(f"{self.name} exited with {code} while starting:\n{self.diagnostics()}")
            try:
                if self._get("/-/ready", timeout=0.5)[0] == 200:
                    return
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise ServerError(f"{self.name} was not ready on {self.url} within {START_TIMEOUT}s:\n"
                                  f"{self.diagnostics()}")
            time.sleep(0.02)

    def _get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with self._opener.open(self.url + path, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.read()

    def alerts(self) -> list[dict[str, Any]]:
        """GET /api/v2/alerts: the alerts Alertmanager holds active (resolved ones are not listed)."""
        status, body = self._get("/api/v2/alerts")
        if status != 200:
            raise ServerError(f"GET /api/v2/alerts answered {status}: {body[:500]!r}")
        return json.loads(body)

    def received(self) -> dict[str, int]:
        """Alerts taken from posts since it started, by status ("firing", "resolved"): its
        alertmanager_alerts_received_total counter, summed over API versions."""
        status, body = self._get("/metrics")
        if status != 200:
            raise ServerError(f"GET /metrics answered {status}")
        counts = {"firing": 0, "resolved": 0}
        for m in re.finditer(r'^alertmanager_alerts_received_total\{status="(\w+)",[^}]*\} (\S+)$',
                             body.decode(), re.M):
            counts[m.group(1)] = counts.get(m.group(1), 0) + int(float(m.group(2)))
        return counts

    def diagnostics(self) -> str:
        """Its own output, for failure messages."""
        text = self.out_path.read_text(errors="replace")[-4000:] if self.out_path.exists() else ""
        return f"--- {self.out_path.name}\n{text}" if text else "(no output)"

    def freeze(self) -> None:
        """SIGSTOP: it still takes connections (the kernel does) but answers nothing until thaw()."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> int | None:
        """Stop it (again is harmless, frozen or not): SIGTERM to its pid, SIGKILL if it has not
        exited after STOP_TIMEOUT; its exit code."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
                os.kill(proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._killpg(proc)
                proc.wait(timeout=STOP_TIMEOUT)
                raise ServerError(f"{self.name} did not stop on SIGTERM within {STOP_TIMEOUT}s; "
                                  f"killed:\n{self.diagnostics()}")
        return proc.returncode

