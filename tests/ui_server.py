"""The app for its tests, on a free loopback port: `pipeline ui` in its own process (``Server``) or served from the
test process (``AppServer``)."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
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

    def cache_folders(self) -> list[Path]:
        """Where the server keeps what Gradio caches (uploads, the pictures it shows): its own folder."""
        import os
        import tempfile

        base = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir())
        return [folder for folder in base.glob("pipeline-ui-*") if (folder / "owner.pid").is_file()
                and (folder / "owner.pid").read_text() == str(self.proc.pid)]

    def kill(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)


def read_as_it_works(env: dict | None) -> bool:
    """Whether the app reads every one of these variables as it works (PIPELINE_*, e.g. $PIPELINE_LORAS), so that
    setting them in this process serves as well as starting a process with them."""
    return all(k.startswith("PIPELINE_") for k in env or {})


class AppServer(Server):
    """The app served from this test process: what `pipeline ui --model tiny-random --out OUT` serves (the same
    ``launch`` over the same ``AppState`` and ``Pipeline``), without the command's start-up. For the tests of what
    the app does over HTTP and in a browser; a test of the process itself (its banner and log, a kill, a restart,
    Ctrl-C, its flags) uses ``Server``. A `pipeline ui` process imports Gradio, then torch and diffusers again:
    on a 2-core EPYC the six browser modules took 233 s of CPU with one each, 147 s with this."""

    SET = ("GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED", "HF_HUB_DISABLE_TELEMETRY", "GRADIO_SSR_MODE")

    def __init__(self, out: Path, port: int | None = None, env: dict | None = None):  # not super(): no process
        """``env``: PIPELINE_* variables the app reads as it works ($PIPELINE_LORAS), set here while it serves."""
        import os

        env = {k: str(v) for k, v in (env or {}).items()}
        if not read_as_it_works(env):
            raise ValueError(f"a process reads {sorted(env)} as it starts: use Server for them")

        from pipeline.api import Pipeline
        from pipeline.web.app import AppState
        from pipeline.web.app.cache import Cache
        from pipeline.web.app.server import check_out, launch

        self.out, self.port = out, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc = None
        self._environ = {k: os.environ.get(k) for k in (*self.SET, *env)}  # launch() points Gradio at its cache
        os.environ.update(env)
        self.demo = self.pipeline = self.cache = None
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            check_out(out)
            self.cache = Cache()
            self.cache.use()
            self.pipeline = Pipeline(model="tiny-random", out=out, progress=False)
            self.demo = launch(AppState(self.pipeline, out, 1), port=self.port, quiet=True, block=False,
                               cache=self.cache)
        except BaseException:
            self.kill()
            raise

    def cache_folders(self) -> list[Path]:
        return [self.cache.root] if self.cache is not None else []

    @contextmanager
    def held(self):
        """While the block runs, a job of this app waits after its first explored picture, or after the first
        progress an upscale reports, until the block ends: a test sees a job running, a second one waiting and Stop
        acting on it however fast the machine renders (the tiny model makes a picture in a tenth of a second,
        before a page can click)."""
        gate, explore, upscale = threading.Event(), self.pipeline.explore, self.pipeline.upscale

        def held_explore(*args, on_picture=None, **kwargs):
            def report(item):
                if on_picture is not None:
                    on_picture(item)
                gate.wait()

            return explore(*args, on_picture=report, **kwargs)

        def held_upscale(*args, on_progress=None, **kwargs):
            def progress(finished, planned):
                if on_progress is not None:
                    on_progress(finished, planned)
                if finished:
                    gate.wait()

            return upscale(*args, on_progress=progress, **kwargs)

        self.pipeline.explore, self.pipeline.upscale = held_explore, held_upscale
        try:
            yield
        finally:
            gate.set()
            del self.pipeline.explore, self.pipeline.upscale  # the class's methods again

    def kill(self, sig=signal.SIGTERM):
        """Stop serving and release the model (``sig``: a process's way to stop; here it always stops cleanly)."""
        import os

        for part in (self.demo, self.pipeline, self.cache):
            if part is not None:
                part.close()
        self.demo = self.pipeline = self.cache = None
        for k, v in self._environ.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def module_server(name: str, *extra: str, env: dict | None = None, process: bool = False):
    """A test module's ``server`` fixture: one app for the module's tests (in a folder named ``name``), stopped
    after them. ``server = module_server("ui-x")`` at the module's top level. In this process (``AppServer``) unless
    ``process`` (the module reads the server's log), flags, or an environment read at start ask for a process."""
    import pytest

    @pytest.fixture(scope="module")
    def server(tmp_path_factory):
        out = tmp_path_factory.mktemp(name) / "outputs"
        in_here = not (process or extra) and read_as_it_works(env)
        srv = AppServer(out, env=env) if in_here else Server(out, *extra, env=env)
        yield srv
        srv.kill()

    return server
