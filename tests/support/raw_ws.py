"""A WebSocket client on a bare socket, for attacks: it completes the handshake, then sends
frames and never reads what the server sends (unless asked to)."""

from __future__ import annotations

import base64
import os
import socket
import struct
import time


class RawWebSocket:
    """One client connection whose receive window the test controls.

    With a small ``receive_buffer`` the kernel stops acknowledging the server's data soon,
    so everything the server still wants to send piles up on the server's side.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        """The client's local port (the server's remote port)."""

    @classmethod
    def connect(
        cls, port: int, path: str = "/ws", *, receive_buffer: int = 4096, timeout: float = 5.0
    ) -> RawWebSocket:
        """Open a connection to ``127.0.0.1:port`` and complete the upgrade handshake.

        Raises:
            ConnectionError: the server did not answer 101.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.decode(errors="replace"))
        return cls(sock)

    def send_text(self, text: str | bytes, timeout: float = 5.0) -> bool:
        """Send one masked text frame; False when the server no longer takes data in time
        (its receive side is paused and the socket buffers are full) or closed."""
        payload = text.encode() if isinstance(text, str) else text
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x81, 0x80 | length)
        elif length < 65536:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(header + mask + masked)
        except (TimeoutError, OSError):
            return False
        return True

    def is_closed_by_peer(self, timeout: float = 0.0) -> bool:
        """True once the server reset or closed the TCP connection (reading what is left)."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.0, deadline - time.monotonic()) or 0.01)
            try:
                if not self.sock.recv(1 << 20):
                    return True
            except ConnectionResetError:
                return True
            except (TimeoutError, BlockingIOError):
                if time.monotonic() >= deadline:
                    return False
            except OSError:
                return True

    def close(self) -> None:
        self.sock.close()


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from ``/proc/<pid>/status``."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


_TIME_WAIT = "06"


def server_side_open(server_port: int, client_port: int) -> bool:
    """Whether the server's end of the loopback connection from ``client_port`` still
    exists (in any state but TIME_WAIT), from ``/proc/net/tcp``: a connection the server
    closed while its send buffer could not drain stays, in FIN_WAIT1 or ESTABLISHED."""
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if (
                int(local.split(":")[1], 16) == server_port
                and int(remote.split(":")[1], 16) == client_port
                and state != _TIME_WAIT
            ):
                return True
    return False
