"""Starting the app safely: loopback unless a password is set, files only from the output folder,
nothing fetched from the network (no analytics, no share tunnel, no proxying of URLs)."""
from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from ...errors import UserError

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def offline_environment() -> None:
    """Before gradio is imported: no analytics or version check, no telemetry of the libraries below."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("GRADIO_SSR_MODE", "False")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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


def launch(state, *, host: str = "127.0.0.1", port: int = 7860, auth: list | None = None,
           open_browser: bool = False, block: bool = True, quiet: bool = False):
    """Build the page and serve it; returns the Blocks (when ``block`` is False, it keeps running)."""
    offline_environment()
    check_host(host, auth or [])
    from starlette.middleware import Middleware

    from . import build_app

    demo = build_app(state)
    demo.queue(default_concurrency_limit=1)  # one GPU queue: explore, refine and upscale share "device"
    demo.launch(server_name=host, server_port=port, auth=auth or None, share=False, inbrowser=open_browser,
                allowed_paths=[str(Path(state.out).resolve())], prevent_thread_lock=not block, quiet=quiet,
                ssr_mode=False, enable_monitoring=False, show_error=True, css=_css(),
                app_kwargs={"middleware": [Middleware(RefuseRemoteFiles)]}, footer_links=["api"])
    return demo


def _css() -> str:
    from . import CSS

    return CSS
