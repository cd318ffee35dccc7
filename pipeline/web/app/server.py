"""Starting the app safely: loopback unless a password is set, files only from the output folder,
nothing fetched from the network (no analytics, no share tunnel, no proxying of URLs)."""
from __future__ import annotations

import os
from pathlib import Path

from ...core.errors import UserError
from .guard import IMAGE_BYTES, Guard, LoginLimiter
from .hosts import is_loopback

AUTH_MESSAGE = ("Log in with a user name and password given to <code>pipeline ui</code> "
                "(<code>--auth</code> or <code>--auth-file</code>).")


def offline_environment() -> None:
    """Before gradio is imported: no analytics or version check, no telemetry of the libraries below."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("GRADIO_SSR_MODE", "False")


def parse_auth(auth: str | None, auth_file: str | Path | None) -> list[tuple[str, str]]:
    """USER:PASS, and/or a file of USER:PASS lines (blank lines and # comments skipped)."""
    pairs = []
    entries = [("--auth", auth)] if auth else []
    if auth_file:
        try:
            text = Path(auth_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"cannot read --auth-file {auth_file} ({err.__class__.__name__})") from err
        entries += [(f"{auth_file}:{n}", line.strip()) for n, line in enumerate(text.splitlines(), 1)
                    if line.strip() and not line.lstrip().startswith("#")]
        if not any(True for _ in entries):
            raise UserError(f"--auth-file {auth_file} holds no USER:PASS line")
    for where, entry in entries:
        user, sep, password = entry.partition(":")
        if not sep or not user or not password:
            raise UserError(f"{where}: give credentials as USER:PASS, both non-empty")
        pairs.append((user, password))
    return pairs


def check_host(host: str, auth: list) -> None:
    if not is_loopback(host) and not auth:
        raise UserError(f"--host {host} lets other machines in: give a password with --auth USER:PASS or "
                        f"--auth-file FILE (or keep the default 127.0.0.1)")


class RefuseRemoteFiles:
    """ASGI middleware: Gradio's file route would fetch an http(s) URL for the caller; the app
    never fetches from the network, so such requests are refused."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            from urllib.parse import unquote

            path = unquote(scope.get("path", "")).lower()
            if "/file=" in path and ("://" in path or path.split("/file=", 1)[1].startswith(("http:", "https:"))):
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
                await send({"type": "http.response.body", "body": b"File not allowed: no network fetches."})
                return
        await self.app(scope, receive, send)


def check_out(out: Path) -> None:
    """--out must be a folder (or not exist yet, under a folder this user can write in)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: give a folder (it is created if missing)")
    existing = next((p for p in [out, *out.absolute().parents] if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserError(f"--out {out}: {existing} is a file, not a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: cannot write in {existing} (permission denied)")


def port_busy(host: str, port: int) -> str:
    return (f"port {port} is already in use on {host} (another `pipeline ui`?): "
            f"choose a free one with --port, e.g. --port {port + 1 if port < 65535 else 7860}")


def check_port(host: str, port: int) -> None:
    """Refuse, before the model loads, a port this server could not listen on."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn binds
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no conflict
        try:
            sock.bind((host, port))
        except (socket.gaierror, UnicodeError):
            raise UserError(f"--host {host} is not an address or a name this machine knows") from None
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise UserError(port_busy(host, port)) from None
            if err.errno == errno.EACCES:
                raise UserError(f"port {port} needs administrator rights here: choose --port 1024 or above") from None
            if err.errno == errno.EADDRNOTAVAIL:
                raise UserError(f"--host {host} is not an address of this machine") from None
            raise UserError(f"cannot listen on {host} port {port} ({err.strerror or err})") from None


def urls(host: str, port: int) -> list[str]:
    """Addresses that reach the server: for 0.0.0.0 / :: the loopback one and the machine's name."""
    import socket

    if host in ("0.0.0.0", "::", ""):
        names = ["127.0.0.1" if host != "::" else "localhost"]
        try:
            names.append(socket.gethostname())
        except OSError:
            pass
    else:
        names = [host]
    return [f"http://{'[' + n + ']' if ':' in n else n}:{port}" for n in dict.fromkeys(names) if n]


def banner(host: str, port: int, out: Path) -> str:
    addresses = urls(host, port)
    text = f"pipeline ui: {addresses[0]}"
    if len(addresses) > 1:
        text += " (this machine), " + ", ".join(addresses[1:]) + " (the network)"
    text += f"  (output folder {out}; Ctrl+C stops)"
    if not is_loopback(host):
        text += "\nplain HTTP: passwords and pictures cross the network unencrypted; put TLS in front (README)"
    return text


class _UserErrorsInOneLine:
    """Stands in for the `traceback` module inside Gradio's queue and routes: an error a user made
    (gr.Error, e.g. a value not among a dropdown's choices; a UserError) is logged as one line;
    anything else keeps its traceback."""

    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    def print_exc(self, *args, **kwargs):
        import sys

        text = _user_error_text(sys.exc_info()[1])
        if text is None:
            return self.real.print_exc(*args, **kwargs)
        print(f"pipeline ui: refused a request: {text}", file=sys.stderr, flush=True)
        return None


def _user_error_text(err) -> str | None:
    if err is None:
        return None
    from gradio.exceptions import Error

    from .errors import message

    if isinstance(err, Error):
        return " ".join(str(getattr(err, "message", err)).split())
    text = message(err)
    return None if text is None else " ".join(text.split())


def quiet_user_errors() -> None:
    import traceback

    import gradio.queueing
    import gradio.routes
    import gradio.utils

    for module in (gradio.queueing, gradio.routes, gradio.utils):
        if getattr(module, "traceback", None) is traceback:
            module.traceback = _UserErrorsInOneLine(traceback)


def launch(state, *, host: str = "127.0.0.1", port: int = 7860, auth: list | None = None,
           open_browser: bool = False, block: bool = True, quiet: bool = False, cache=None,
           announce: str | None = None):
    """Build the page and serve it; returns the Blocks (when ``block`` is False, it keeps running).

    ``cache`` (cache.Cache): Gradio's file cache, made and pointed at here when not given (it must
    be named before gradio is imported for the few paths gradio fixes on import: `pipeline ui` does
    that). ``announce`` is printed to stderr once the server listens."""
    import atexit
    import sys

    offline_environment()
    check_host(host, auth or [])
    from .cache import Cache

    if cache is None:
        cache = Cache()
        cache.use()
    atexit.register(cache.close)
    from starlette.middleware import Middleware

    from . import build_app

    quiet_user_errors()
    demo = build_app(state)
    # one GPU queue: explore, refine and upscale share "device"; with --ray, as many jobs as workers at once
    demo.queue(default_concurrency_limit=getattr(state, "slots", 1))
    demo.delete_cache = None  # the Cache sweeps (by age and size) and removes its folder at exit
    guard = Middleware(Guard, local_only=is_loopback(host) and not auth, limiter=LoginLimiter(), cache=cache)
    try:
        demo.launch(server_name=host, server_port=port, auth=auth or None, auth_message=AUTH_MESSAGE, share=False, inbrowser=open_browser,
                    allowed_paths=[str(Path(state.out).resolve())], prevent_thread_lock=True, quiet=quiet,
                    ssr_mode=False, enable_monitoring=False, show_error=True, css=_css(),
                    max_file_size=IMAGE_BYTES, run_history=False,
                    app_kwargs={"middleware": [guard, Middleware(RefuseRemoteFiles)]}, footer_links=["api"])
    except OSError as err:
        cache.close()
        if "port" in str(err).lower():
            raise UserError(port_busy(host, port)) from None
        raise
    cache.start()
    if announce:
        print(announce, file=sys.stderr, flush=True)
    if block:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():  # kill (SIGTERM) stops as Ctrl+C does
            signal.signal(signal.SIGTERM, _interrupt)
        try:
            demo.block_thread()
        finally:
            cache.close()
    return demo


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _css() -> str:
    from . import CSS

    return CSS
