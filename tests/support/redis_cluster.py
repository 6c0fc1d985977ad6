"""A real Redis Cluster on loopback: three masters, no replicas, made by ``redis-cli --cluster``."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import redis

from tests.support.net import free_port, wait_until_sync


def _cluster_port() -> int:
    """A free port whose cluster bus port (10,000 higher) is valid and free as well."""
    for _ in range(100):
        port = free_port()
        if port <= 55535 and _is_free(port + 10000):
            return port
    raise RuntimeError("no free pair of ports for a cluster node")


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class RedisCluster:
    """Three ``redis-server --cluster-enabled yes`` processes joined into one cluster."""

    def __init__(self, masters: int = 3) -> None:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            raise RuntimeError("redis-server and redis-cli are needed (apt-get install redis)")
        self.server, self.cli = server, cli
        self.ports = [_cluster_port() for _ in range(masters)]
        self.dir = Path(tempfile.mkdtemp(prefix="gw-cluster-"))
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        """Start the nodes and join them; on any failure, nothing is left running."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        for port in self.ports:
            node_dir = self.dir / str(port)
            node_dir.mkdir()
            self.processes.append(
                subprocess.Popen(
                    [
                        self.server,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(node_dir),
                        "--logfile",
                        str(node_dir / "redis.log"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.ports:
            wait_until_sync(lambda port=port: self._answers(port), 10, f"redis node {port}")
        subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=30,
        )
        wait_until_sync(self._cluster_ok, 20, "cluster_state:ok on every node")

    def _answers(self, port: int) -> bool:
        try:
            with redis.Redis(host="127.0.0.1", port=port, socket_timeout=2) as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    def _cluster_ok(self) -> bool:
        for port in self.ports:
            with redis.Redis(host="127.0.0.1", port=port, socket_timeout=2) as client:
                info = client.execute_command("CLUSTER", "INFO")
                if b"cluster_state:ok" not in info:
                    return False
        return True

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.ports[0], socket_timeout=5)

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
        for process in self.processes:
            process.wait(10)
        self.processes.clear()
