"""`gateway cluster`: the docker compose topology as local processes, without Docker.

A `redis-server` (unless the settings name a Redis URL), N `gateway serve` replicas on free
loopback ports, and nginx on ``--port``, configured from ``deploy/nginx.conf`` like the
compose file's nginx. As in the shipped deployment, each replica has an internal port of
its own for /api, /metrics, /admin and the docs, which nginx does not proxy.

Every child runs in a process group of its own, so a Ctrl-C in the terminal reaches only
this supervisor, which then stops them in order: replicas (they drain) and nginx together,
then Redis. A replica that dies is reported and the others keep
serving, as behind any load balancer; if nginx, Redis or the last replica dies, the cluster
stops.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Literal

from gateway.cli import nginx
from gateway.settings import Settings, child_environment, load_settings

START_SECONDS = 30.0
"""How long every child together may take to become ready."""

POLL_SECONDS = 0.1
ChildKind = Literal["redis", "replica", "nginx"]
SBIN_DIRECTORIES = ("/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/local/nginx/sbin")
INSTALL_HINTS = {
    "redis-server": "apt-get install redis-server, brew install redis, or set GATEWAY_REDIS_URL",
    "nginx": "apt-get install nginx, or brew install nginx",
}


class ClusterError(Exception):
    """The cluster cannot start; the message says why and what to do."""


class _StopRequested(Exception):
    """Ctrl-C or SIGTERM arrived while the cluster was starting."""


def find_program(name: str, path: str | None = None) -> str | None:
    """The executable ``name`` on ``path`` (default ``$PATH``), else in the sbin directories.

    Debian installs nginx in /usr/sbin, which is not on an ordinary user's ``$PATH``.
    """
    found = shutil.which(name, path=path)
    if found is None and path is None:
        found = shutil.which(name, path=os.pathsep.join(SBIN_DIRECTORIES))
    return found


def required_programs(need_redis: bool, path: str | None = None) -> dict[str, str]:
    """Paths of the programs the cluster runs.

    Raises:
        ClusterError: one or more is not installed; the message names each and how to get it.
    """
    names = ["redis-server", "nginx"] if need_redis else ["nginx"]
    found = {name: find_program(name, path) for name in names}
    missing = [name for name, program in found.items() if program is None]
    if missing:
        lines = [f"  {name}: {INSTALL_HINTS[name]}" for name in missing]
        raise ClusterError(
            f"{' and '.join(missing)} not found; gateway cluster needs them:\n" + "\n".join(lines)
        )
    return {name: program for name, program in found.items() if program is not None}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int) -> None:
    """Raises: ClusterError: something already listens on ``port``."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ClusterError(
                f"port {port} is not free ({exc.strerror}); choose another with --port"
            ) from None


@dataclass
class Child:
    """One process the cluster started; its output is copied to ours, prefixed by its name."""

    name: str
    kind: ChildKind
    address: str
    process: subprocess.Popen[bytes]
    internal: str | None = None
    """A replica's internal address (/api, /metrics, /admin, /docs)."""
    reported: bool = False
    pump: threading.Thread | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def essential(self) -> bool:
        """Without it the cluster cannot serve (a replica is not: the others take over)."""
        return self.kind != "replica"

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def kill_group(self) -> None:
        """SIGKILL what is left of the child's process group (nginx's workers too).

        Only while the group is still the child's: its leader not yet reaped, or members
        left (then its id cannot have been reused).
        """
        if self.alive() or _group_has_members(self.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)

    def wait(self, timeout: float) -> bool:
        """Whether the child exited within ``timeout`` seconds."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def describe_exit(self) -> str:
        code = self.process.returncode
        if code is not None and code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit status {code}"


class Cluster:
    """Starts, watches and stops the children; `run_cluster` drives it."""

    def __init__(
        self,
        settings: Settings,
        replicas: int,
        port: int,
        config: str | None,
        log_level: str,
        output: IO[str],
        app: str | None = None,
    ) -> None:
        self.settings = settings
        self.app = app
        self.replicas = replicas
        self.port = port
        self.config = config
        self.log_level = log_level
        self.output = output
        self.children: list[Child] = []
        self.redis_url = settings.redis_url
        self.directory = Path(tempfile.mkdtemp(prefix="gateway-cluster-"))
        self.stop_requested = threading.Event()
        self._output_lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, programs: dict[str, str], template: str) -> None:
        """Start every child and wait until each serves.

        Raises:
            ClusterError: a child exited or did not become ready in time.
            _StopRequested: Ctrl-C or SIGTERM arrived meanwhile.
        """
        deadline = time.monotonic() + START_SECONDS
        if self.redis_url is None:
            self._start_redis(programs["redis-server"], deadline)
        replicas = [self._start_replica(index) for index in range(1, self.replicas + 1)]
        for replica in replicas:
            self._wait_until(replica, f"{replica.address}/readyz", deadline)
        self._start_nginx(programs["nginx"], template, [r.address for r in replicas], deadline)

    def _start_redis(self, program: str, deadline: float) -> None:
        port = free_port()
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        redis_dir = self.directory / "redis"
        redis_dir.mkdir()
        command = [program, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", str(redis_dir), "--loglevel", "warning"]
        child = self._spawn("redis", "redis", self.redis_url, command)
        self._wait_for(child, lambda: _redis_answers(port), deadline)

    def _start_replica(self, index: int) -> Child:
        port = free_port()
        name = f"gateway-{index}"
        command = [sys.executable, "-m", "gateway", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--log-level", self.log_level]
        if self.config:
            command += ["--config", self.config]
        assert self.redis_url is not None
        internal_port = free_port()
        if self.app:
            command += ["--app", self.app, "--redis-url", self.redis_url, "--node-id", name]
            command += ["--internal-port", str(internal_port)]
        environment = child_environment(
            redis_url=self.redis_url, node_id=name, internal_port=internal_port
        )
        address = f"http://127.0.0.1:{port}"
        child = self._spawn(name, "replica", address, command, environment=environment)
        child.internal = f"http://127.0.0.1:{internal_port}"
        return child

    def _start_nginx(
        self, program: str, template: str, replicas: list[str], deadline: float
    ) -> None:
        upstreams = [address.removeprefix("http://") for address in replicas]
        config = write_nginx_config(self.directory, template, f"127.0.0.1:{self.port}", upstreams)
        command = [program, "-p", str(self.directory), "-c", str(config), "-e", "stderr"]
        child = self._spawn("nginx", "nginx", self.url, command)
        self._wait_until(child, f"{self.url}/healthz", deadline)

    def _spawn(
        self,
        name: str,
        kind: ChildKind,
        address: str,
        command: list[str],
        *,
        environment: dict[str, str] | None = None,
    ) -> Child:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
        child = Child(name, kind, address, process)
        assert process.stdout is not None
        child.pump = threading.Thread(
            target=self._copy_output, args=(name, process.stdout), daemon=True
        )
        child.pump.start()
        self.children.append(child)
        return child

    def _copy_output(self, name: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            with self._output_lock:
                print(f"{name:<10} | {line}", file=sys.stderr, flush=True)
        stream.close()

    def _wait_until(self, child: Child, url: str, deadline: float) -> None:
        last_answer = "no answer"

        def answers_200() -> bool:
            nonlocal last_answer
            status, body = _http_get(url)
            last_answer = f"{status} {body}".strip() if status else "no answer"
            return status == 200

        try:
            self._wait_for(child, answers_200, deadline)
        except ClusterError as exc:
            raise ClusterError(f"{exc} (last answer from {url}: {last_answer})") from None

    def _wait_for(self, child: Child, ready: Callable[[], bool], deadline: float) -> None:
        while not ready():
            if self.stop_requested.is_set():
                raise _StopRequested
            for started in self.children:
                if not started.alive():
                    raise ClusterError(
                        f"{started.name} exited during start-up "
                        f"({started.describe_exit()}); its output is above"
                    )
            if time.monotonic() > deadline:
                raise ClusterError(f"{child.name} was not ready within {START_SECONDS:g} s")
            time.sleep(POLL_SECONDS)

    def announce(self) -> None:
        """Say where to open the demo and what runs where."""
        lines = [
            f"gateway cluster: {self.replicas} replicas behind nginx, ready.",
            f"  demo        {self.url}/",
            f"  websocket   ws://127.0.0.1:{self.port}/ws",
        ]
        replicas = self._of_kind("replica")
        if replicas and replicas[0].internal:
            lines.append(f"  admin       {replicas[0].internal}/admin (internal port)")
        if not self._of_kind("redis"):
            lines.append(f"  redis       external  {self.redis_url}")
        for child in self.children:
            line = f"  {child.name:<11} pid {child.pid:<7} {child.address}"
            lines.append(f"{line}  internal {child.internal}" if child.internal else line)
        lines.append("Ctrl-C stops everything.")
        with self._output_lock:
            print("\n".join(lines), file=self.output, flush=True)

    def watch(self) -> int:
        """Run until asked to stop (exit status 0) or until the cluster cannot serve (1)."""
        while not self.stop_requested.wait(POLL_SECONDS):
            for child in self.children:
                if child.alive() or child.reported:
                    continue
                child.reported = True
                if child.essential or not any(c.alive() for c in self._of_kind("replica")):
                    self._say(
                        f"{child.name} (pid {child.pid}) exited unexpectedly "
                        f"({child.describe_exit()}); stopping the cluster"
                    )
                    return 1
                self._say(
                    f"{child.name} (pid {child.pid}) exited unexpectedly "
                    f"({child.describe_exit()}); the other replicas keep serving"
                )
        return 0

    def stop(self) -> None:
        """Stop every child: replicas drain while nginx finishes its connections, then Redis."""
        if any(child.alive() for child in self.children):
            self._say(f"stopping (replicas drain for up to {self.settings.drain_seconds:g} s)")
        replicas = self._of_kind("replica")
        balancers = self._of_kind("nginx")
        stores = self._of_kind("redis")
        for child in replicas:
            child.signal(signal.SIGTERM)
        for child in balancers:
            child.signal(signal.SIGQUIT)
        self._wait_or_kill(replicas, self.settings.drain_seconds + 10)
        self._wait_or_kill(balancers, 5)
        for child in stores:
            child.signal(signal.SIGTERM)
        self._wait_or_kill(stores, 10)
        for child in self.children:
            if child.pump is not None:
                child.pump.join(5)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _wait_or_kill(self, children: list[Child], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for child in children:
            if not child.wait(max(0.0, deadline - time.monotonic())):
                self._say(f"{child.name} (pid {child.pid}) did not stop in time: killing it")
            child.kill_group()

    def _of_kind(self, kind: ChildKind) -> list[Child]:
        return [child for child in self.children if child.kind == kind]

    def _say(self, message: str) -> None:
        with self._output_lock:
            print(f"gateway cluster: {message}", file=sys.stderr, flush=True)


def run_cluster(
    replicas: int,
    port: int,
    config: str | None = None,
    log_level: str = "info",
    output: IO[str] | None = None,
    *,
    app: str | None = None,
) -> int:
    """`gateway cluster`: start everything, serve until Ctrl-C or SIGTERM, stop everything.
    With ``app`` (``MODULE:ATTR``), every replica serves that `gateway.Gateway`, and its
    settings (under ``config``) decide whether Redis is started.

    Raises:
        ClusterError: a program is missing, the port is taken, or a child failed to start.
        ConfigError: the settings or the config file are invalid, or ``app`` is no gateway.
    """
    if app is not None:
        from gateway.cli.apps import load_gateway
        from gateway.settings import with_overrides

        settings = with_overrides(load_gateway(app).settings, config)
    else:
        settings = load_settings(config)
    programs = required_programs(need_redis=settings.redis_url is None)
    template = _read_template()
    check_port_free(port)
    cluster = Cluster(settings, replicas, port, config, log_level, output or sys.stdout, app)
    with _stop_on_signals(cluster.stop_requested):
        try:
            cluster.start(programs, template)
            cluster.announce()
            return cluster.watch()
        except _StopRequested:
            return 0
        finally:
            cluster.stop()


def _read_template() -> str:
    try:
        return nginx.TEMPLATE.read_text()
    except FileNotFoundError:
        raise ClusterError(
            f"the nginx template {nginx.TEMPLATE} is missing: "
            "gateway cluster runs from a source checkout of the gateway"
        ) from None


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop`` instead of interrupting whatever runs."""

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {
        signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def write_nginx_config(directory: Path, template: str, listen: str, upstreams: list[str]) -> Path:
    """Write the site (rendered template) and the nginx.conf including it; returns the latter."""
    site = directory / "gateway.conf"
    site.write_text(nginx.render_site(template, listen, upstreams))
    config = directory / "nginx.conf"
    config.write_text(nginx.main_config(directory, site, _nginx_user(), _worker_connections()))
    return config


def _http_get(url: str) -> tuple[int | None, str]:
    """The status and the start of the body of a GET; (None, "") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status), response.read(200).decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read(200).decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return None, ""


def _group_has_members(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (Linux /proc; False elsewhere)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                return True
    return False


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _nginx_user() -> str | None:
    """Run nginx's workers as the current user; only needed (and allowed) when root."""
    if os.geteuid() != 0:
        return None
    return f"{pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name}"


def _worker_connections() -> int:
    """As many connections as the open-file limit allows, up to 4096 (two per client)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(256, min(4096, soft - 64))
