"""`pipeline ui`: the browser app (Gradio, the optional extra `pipeline[ui]`)."""
from __future__ import annotations

import logging
import signal
import threading

import click

from ..core.errors import UserError
from .common import make_pipeline, resolve_out, session_options, user_errors

log = logging.getLogger("pipeline")


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on; anything but loopback needs --auth-file (or --auth)")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True, help="port to listen on")
@click.option("--auth", default=None, metavar="USER:PASS",
              help="require this user name and password (other users of this machine see it in `ps`: "
                   "prefer --auth-file)")
@click.option("--auth-file", default=None, metavar="FILE", type=click.Path(dir_okay=False),
              help="require one of the USER:PASS lines of FILE")
@click.option("--open", "open_browser", is_flag=True, help="open the page in the default browser")
@session_options
@user_errors
def ui(host, port, auth, auth_file, open_browser, model, out, device, dtype, memory):
    """Explore, pick, refine and upscale from a browser page (one model load, shared by every tab).

    \b
      pipeline ui                                    # http://127.0.0.1:7860
      pipeline ui --model tiny-random --out outputs --port 7861 --open
      pipeline ui --host 0.0.0.0 --auth-file users.txt  # on a LAN: only with a password (plain HTTP)
    """
    from ..web.app.server import banner, check_host, check_out, check_port, offline_environment, parse_auth

    credentials = parse_auth(auth, auth_file)
    check_host(host, credentials)  # before the slow imports
    from ..core.hardware import check_device

    check_device(device)  # `--device gpu`: one sentence now, not after Gradio's import
    out = resolve_out(out)
    check_out(out)
    check_port(host, port)  # before the model loads (it is checked again as the server starts)
    if auth:
        log.warning("--auth shows the password to every user of this machine (ps): --auth-file FILE keeps it out")
    offline_environment()
    from ..web.app.cache import Cache

    cache = Cache()
    cache.use()  # Gradio's cache: a private folder, bounded, removed at exit (before gradio is imported)
    if threading.current_thread() is threading.main_thread():  # `kill` while the model loads: as Ctrl+C
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise UserError("the browser app needs Gradio: pip install 'pipeline[ui]'") from None
        from ..web.app import AppState
        from ..web.app.server import launch

        with make_pipeline(model, out, device, dtype, memory, progress=False) as pipeline:
            slots, announce = 1, banner(host, port, out)
            if pipeline.session.ray is not None:  # jobs of every tab go to the pool: one at a time per worker
                from ..scale.ray_pool import pool_for

                pool = pool_for(pipeline.session.ray)
                slots = len(pool.workers())
                announce += f"\nrendering on {pool.describe()}"
            launch(AppState(pipeline, out, slots), host=host, port=port, auth=credentials, open_browser=open_browser,
                   quiet=True, cache=cache, announce=announce)
    finally:
        cache.close()


def _interrupt(signum, frame):
    raise KeyboardInterrupt
