"""`pipeline ui` in its own process on a free loopback port, for the app's tests."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from conftest import cli_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`pipeline ui` in its own process, as a user starts it."""

    def __init__(self, out: Path, *extra: str, port: int | None = None, env: dict | None = None):
        """``port``: a given one (a restart on the same address, as a user's open page expects);
        ``env``: more environment variables for the server."""
        self.out, self.port = out, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = out.parent / f"ui-{self.port}.log"
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:  # a restart on the same port adds to the log
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline", "ui", "--model", "tiny-random", "--out", str(out),
                 "--port", str(self.port), *extra], stdout=log, stderr=subprocess.STDOUT,
                env=cli_env(**(env or {})))
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"pipeline ui exited ({self.proc.returncode}):\n{self.log.read_text()}")
            try:
                urllib.request.urlopen(self.url, timeout=2).close()
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        self.kill()
        raise AssertionError(f"pipeline ui did not answer within 180 s:\n{self.log.read_text()}")

    def client(self, **kwargs):
        import gradio_client

        return gradio_client.Client(self.url, verbose=False, **kwargs)

    def get(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.url.rstrip("/") + path, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as err:
            return err.code

    def kill(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)


def module_server(name: str, *extra: str, env: dict | None = None):
    """A test module's ``server`` fixture: one `pipeline ui` for the module's tests (in a folder named ``name``),
    stopped after them. ``server = module_server("ui-x")`` at the module's top level."""
    import pytest

    @pytest.fixture(scope="module")
    def server(tmp_path_factory):
        srv = Server(tmp_path_factory.mktemp(name) / "outputs", *extra, env=env)
        yield srv
        srv.kill()

    return server
