"""Small process helpers shared by the supervisor and the test session."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time

_PR_SET_PDEATHSIG = 1


def child_preexec() -> None:
    """Runs in each child before exec: die with the parent, even if it is SIGKILLed."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(
    host: str, port: int, timeout: float, process: subprocess.Popen | None = None, *, what: str
) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(host, port):
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before listening")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on {host}:{port} within {timeout:.0f}s")
        time.sleep(0.1)


def stop_process(process: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """SIGTERM, wait, then SIGKILL."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
