"""Long-running service processes for the deployment tests: free ports, start, wait, stop.

Every process is started in a session of its own, so that stopping it (by its process id) also
stops whatever it started, and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None) -> subprocess.Popen:
    """Start ``command`` in its own session, stdout and stderr to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    process.log_file = log  # closed by stop()
    process.log_path = log_path
    return process


def stop(process: subprocess.Popen | None, grace_seconds: float = 20) -> None:
    """SIGTERM the process's session (the process and its children), SIGKILL after the grace time."""
    if process is None:
        return
    for sig, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 10)):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)  # the session started by start(): its group id is its pid
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    # Children may outlive a leader that exited on SIGTERM: clear the group too.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    log_file = getattr(process, "log_file", None)
    if log_file:
        log_file.close()


def log_tail(process: subprocess.Popen, chars: int = 4000) -> str:
    path = getattr(process, "log_path", None)
    return path.read_text(errors="replace")[-chars:] if path and path.exists() else ""


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 1.0,
               processes: tuple[subprocess.Popen, ...] = ()) -> T:
    """Call ``check`` until it returns something truthy; fail after ``timeout`` seconds, or as soon
    as one of ``processes`` has exited (with the end of its log)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"{what}: process exited with {process.returncode}\n{log_tail(process)}")
        if time.monotonic() > deadline:
            tails = "\n".join(log_tail(process) for process in processes)
            raise TimeoutError(f"{what}: not reached within {timeout:.0f} s\n{tails}")
        time.sleep(interval)


def get_json(url: str, headers: dict[str, str] | None = None, timeout: float = 5) -> dict | list | None:
    """GET a JSON document; None when the server is not (yet) answering."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return None


@contextlib.contextmanager
def stop_on_sigterm():
    """Turn SIGTERM (e.g. a CI job's timeout) into KeyboardInterrupt while the block runs, so that
    pytest still runs fixture teardown and the services started here are stopped, not orphaned."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
