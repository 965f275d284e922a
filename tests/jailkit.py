"""What the jail tests share (tests/test_probes_jail.py, tests/test_harness_jail.py): a
listener on the host's loopback that records what reaches it, and finding a process
by a token in its command line (a jail's own PIDs mean nothing on the host)."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path


def processes_with(token: str) -> list[int]:
    """Host processes whose command line carries `token`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


class Listener:
    """A TCP and a UDP socket on the host's 127.0.0.1, recording whatever reaches them."""

    def __init__(self) -> None:
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(8)
        self.tcp.settimeout(0.2)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.tcp.getsockname()[1]))
        self.udp.settimeout(0.2)
        self.port = self.tcp.getsockname()[1]
        self.got: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True),
                         threading.Thread(target=self._receive, daemon=True)]
        for t in self._threads:
            t.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                continue
            self.got.append("tcp")
            conn.close()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                self.udp.recvfrom(4096)
            except OSError:
                continue
            self.got.append("udp")

    def close(self) -> list[str]:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        self.tcp.close()
        self.udp.close()
        return self.got


def open_listener() -> Listener:
    """A listener shown to work: a connect from this process is recorded, then forgotten."""
    lst = Listener()
    with socket.create_connection(("127.0.0.1", lst.port), timeout=2):
        pass
    deadline = time.monotonic() + 2
    while not lst.got and time.monotonic() < deadline:
        time.sleep(0.02)
    assert lst.got == ["tcp"]
    lst.got.clear()
    return lst
