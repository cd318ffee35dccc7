"""The ASGI guard in front of Gradio: what a request may be before Gradio sees it.

- Host: on a loopback server without a password only a loopback name (a DNS-rebinding page names
  its own host; with a password it has no cookie, and a TLS proxy in front may pass its own name).
- Origin: a POST (PUT, PATCH, DELETE) from a page of another origin is refused. Browsers send Origin
  on every cross-origin POST; clients without one (gradio_client, curl) are not browsers.
- Bodies: at most ``body_bytes`` (JSON of the API calls), read before Gradio sees them; with a
  password, 64 KB (a login form) until the client has logged in, and no upload.
- Uploads: only ``/gradio_api/upload``, only image files (an image extension and an image's first
  bytes: PNG, JPEG, WebP, BMP, TIFF), at most ``upload_files`` of them and ``upload_bytes`` in all;
  multipart bodies anywhere else are refused, except Gradio's own login form (POST /login: a small
  multipart body of fields, no file); at most 4 uploads are read at once. The cache (cache.py)
  deletes them after a while.
- Login: after ``free`` failures in a row a client (by IP) gets 429 for a time that doubles with
  each further failure (LoginLimiter); a success resets it.
- Gradio routes the app does not use answer 404: run history, MCP, recordings, streaming inputs,
  the vibe editor.

Only the standard library here: the guard runs before any page code.
"""
from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from .hosts import is_loopback

IMAGE_BYTES = 30 * 2**20  # one dropped image
BODY_BYTES = 4 * 2**20  # an API call's JSON (a 256-picture gallery value is ~150 KB)
UPLOAD_FILES = 4
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}  # what `pipeline upscale` reads
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
STRANGER_BYTES = 64 * 2**10  # the body a client not logged in may send (a login form) when a password is set
UPLOADS_AT_ONCE = 4  # upload bodies held in memory at once (30 MB each at most)


def image_kind(head: bytes) -> str | None:
    """The image format a file's first bytes announce, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


class LoginLimiter:
    """Failed logins per client: ``free`` are allowed, then each further failure locks the client
    out for ``first`` seconds, doubling up to ``longest``. A success clears the client's count."""

    def __init__(self, free: int = 5, first: float = 60.0, longest: float = 900.0, clock=time.monotonic):
        self.free, self.first, self.longest, self.clock = free, first, longest, clock
        self.clients: dict[str, list] = {}  # client -> [failures, locked until, last failure]

    def wait(self, client: str) -> float:
        """Seconds before ``client`` may try again (0: now)."""
        entry = self.clients.get(client)
        return max(0.0, entry[1] - self.clock()) if entry else 0.0

    def failed(self, client: str) -> None:
        now = self.clock()
        entry = self.clients.setdefault(client, [0, 0.0, now])
        entry[0] += 1
        entry[2] = now
        if entry[0] >= self.free:
            entry[1] = now + min(self.first * 2 ** (entry[0] - self.free), self.longest)
        if len(self.clients) > 10_000:  # many addresses: forget the ones idle for an hour, unlocked
            for key in [k for k, (_, until, last) in self.clients.items() if until < now and now - last > 3600]:
                del self.clients[key]

    def succeeded(self, client: str) -> None:
        self.clients.pop(client, None)


class Refused(Exception):
    def __init__(self, status: int, text: str, headers=()):
        super().__init__(text)
        self.status, self.text, self.headers = status, text, list(headers)


def _split_host(netloc: str, scheme: str) -> tuple[str, int | None]:
    """'127.0.0.1:7860' -> ('127.0.0.1', 7860); '[::1]' -> ('::1', 80) for http."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        name, _, rest = netloc[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif netloc.count(":") == 1:
        name, _, port = netloc.partition(":")
    else:
        name, port = netloc, ""
    if port:
        return name, int(port) if port.isdigit() else -1
    return name, {"http": 80, "https": 443}.get(scheme)


def _host_name(netloc: str) -> str:
    return _split_host(netloc, "http")[0]


def _same_origin(origin: str, host: str, scheme: str) -> bool:
    """Whether a browser's Origin header names this server as the request reached it (Host)."""
    parts = urlsplit(origin.strip().lower())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False  # "null" (a sandboxed frame, a file: page), or junk
    origin_name, origin_port = _split_host(parts.netloc, parts.scheme)
    host_name, host_port = _split_host(host, scheme)
    if parts.scheme != scheme:
        # behind a TLS proxy the page is https while this server sees http: the host name decides
        # (the proxy passes Host through; see the README)
        return origin_name == host_name
    return (origin_name, origin_port) == (host_name, host_port)


def _multipart_files(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """(filename, first bytes) of each file part of a multipart/form-data body."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise Refused(400, "an upload is multipart/form-data")
    parts: list[dict] = []
    field = []

    def begin():
        parts.append({"headers": {}, "head": b""})
        field.clear()

    def header_field(data, start, end):
        field.append(data[start:end])

    def header_value(data, start, end):
        name = b"".join(field).lower()
        parts[-1]["headers"][name] = parts[-1]["headers"].get(name, b"") + data[start:end]

    def header_end():
        field.clear()

    def part_data(data, start, end):
        part = parts[-1]
        if len(part["head"]) < 16:
            part["head"] += data[start:min(end, start + 16)]

    parser = MultipartParser(boundary, {"on_part_begin": begin, "on_header_field": header_field,
                                        "on_header_value": header_value, "on_header_end": header_end,
                                        "on_part_data": part_data})
    try:
        parser.write(body)
        parser.finalize()
    except Exception as err:  # noqa: BLE001 - any parse failure is a malformed upload
        raise Refused(400, f"malformed upload ({err.__class__.__name__})") from None
    files = []
    for part in parts:
        disposition, options = parse_options_header(part["headers"].get(b"content-disposition", b""))
        filename = options.get(b"filename")
        if filename is None:
            continue
        files.append((filename.decode("utf-8", "replace"), part["head"]))
    return files


def check_upload(body: bytes, content_type: str, max_files: int = UPLOAD_FILES) -> None:
    """Refuse (Refused) an upload that is not a few image files."""
    files = _multipart_files(body, content_type)
    if not files:
        raise Refused(400, "the upload holds no file")
    if len(files) > max_files:
        raise Refused(413, f"at most {max_files} files per upload")
    for name, head in files:
        suffix = PurePosixPath(name.replace("\\", "/")).suffix.lower()
        if (suffix and suffix not in IMAGE_SUFFIXES) or image_kind(head) is None:  # no suffix: a pasted blob
            raise Refused(415, f"only images can be uploaded ({', '.join(sorted(IMAGE_SUFFIXES))}): "
                               f"{PurePosixPath(name).name!r} is not one")


class Guard:
    """ASGI middleware; see the module's docstring. ``cache`` (cache.Cache or None) is told
    about uploaded files and asked for room before an upload is accepted."""

    def __init__(self, app, *, local_only: bool = True, limiter: LoginLimiter | None = None, cache=None,
                 body_bytes: int = BODY_BYTES, upload_bytes: int = IMAGE_BYTES + 2**16,
                 upload_files: int = UPLOAD_FILES):
        self.app, self.local_only, self.cache = app, local_only, cache
        self.limiter = limiter or LoginLimiter()
        self.body_bytes, self.upload_bytes, self.upload_files = body_bytes, upload_bytes, upload_files
        self.uploads_in_flight = 0  # bodies being read (the event loop is one thread: a plain count)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            receive = await self._check(scope, receive)
        except Refused as refusal:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await send({"type": "http.response.start", "status": refusal.status,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"), *refusal.headers]})
            await send({"type": "http.response.body", "body": refusal.text.encode()})
            return
        path = scope.get("path", "")
        if scope["type"] == "http" and scope["method"] == "POST" and path.rstrip("/").endswith("/login"):
            await self._login(scope, receive, send)
        elif scope["type"] == "http" and self._is_upload(scope) and self.cache is not None:
            await self._upload(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    @staticmethod
    def _is_upload(scope) -> bool:
        return scope.get("method") == "POST" and scope.get("path", "").rstrip("/").endswith("/gradio_api/upload")

    async def _check(self, scope, receive):
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if self.local_only and host and not is_loopback(_host_name(host)):
            raise Refused(403, "this server answers only to a loopback address (127.0.0.1, localhost)")
        path = unquote(scope.get("path", "")).lower()
        method = scope.get("method", "GET")
        if _switched_off(path, method):
            raise Refused(404, "Not Found")
        if scope["type"] == "websocket" or method in UNSAFE_METHODS:
            origin = headers.get("origin")
            scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
            if origin is not None and not _same_origin(origin, host, scheme):
                raise Refused(403, "cross-origin request refused")
            if headers.get("sec-fetch-site") == "cross-site":
                raise Refused(403, "cross-origin request refused")
        if scope["type"] == "websocket":
            return receive
        length = headers.get("content-length")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if not chunked and (length is None or length.strip() == "0"):
            return receive
        upload = self._is_upload(scope)
        cap = self.upload_bytes if upload else self.body_bytes
        if not _logged_in(scope, headers):  # a stranger's body is not read beyond a login form's size
            if upload:
                raise Refused(401, "log in first")
            cap = min(cap, STRANGER_BYTES)
        login_form = method == "POST" and path.rstrip("/").endswith("/login")
        multipart = headers.get("content-type", "").lower().startswith("multipart/")
        if login_form:
            cap = min(cap, STRANGER_BYTES)  # Gradio's login page posts its two fields as multipart/form-data
        elif not upload and multipart:
            raise Refused(415, "files can be uploaded only to /gradio_api/upload")
        size = f"{cap // 2**20} MB" if cap >= 2**20 else f"{cap // 2**10} KB"
        too_big = Refused(413, f"request body over {size}", [(b"connection", b"close")])
        if length is not None and (not length.strip().isdigit() or int(length) > cap):
            raise too_big
        if upload:
            if self.uploads_in_flight >= UPLOADS_AT_ONCE:
                raise Refused(503, "too many uploads at once: try again in a moment", [(b"retry-after", b"5")])
            self.uploads_in_flight += 1
            try:
                body = await _read_body(receive, cap, too_big)
            finally:
                self.uploads_in_flight -= 1
        else:
            body = await _read_body(receive, cap, too_big)
        if login_form and multipart and _multipart_files(body, headers.get("content-type", "")):
            raise Refused(415, "the login form holds a user name and a password, no file")
        if upload:  # parsing 30 MB and sweeping the cache: off the event loop
            await asyncio.to_thread(check_upload, body, headers.get("content-type", ""), self.upload_files)
            if self.cache is not None and not await asyncio.to_thread(self.cache.make_room, len(body)):
                raise Refused(503, "the upload folder is full: try again in a few minutes",
                              [(b"retry-after", b"60")])
        return _replay(body, receive)

    async def _login(self, scope, receive, send):
        client = (scope.get("client") or ("?", 0))[0]
        wait = self.limiter.wait(client)
        if wait > 0:
            seconds = math.ceil(wait)
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                    (b"retry-after", str(seconds).encode())]})
            await send({"type": "http.response.body",
                        "body": f"too many failed logins: try again in {seconds} s".encode()})
            return
        status = []

        async def watch(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        if status and status[0] == 200:
            self.limiter.succeeded(client)
        elif status and status[0] in (400, 401, 403):
            self.limiter.failed(client)

    async def _upload(self, scope, receive, send):
        """Pass the upload on; tell the cache which files it wrote (deleted when they expire)."""
        start, chunks = {}, []

        async def capture(message):
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    if start.get("status") == 200:
                        try:
                            paths = json.loads(b"".join(chunks))
                        except ValueError:
                            paths = []
                        self.cache.uploaded([p for p in paths if isinstance(p, str)])
                    await send(start)
                    await send({"type": "http.response.body", "body": b"".join(chunks)})
                return
            else:
                await send(message)

        await self.app(scope, receive, capture)


def _logged_in(scope, headers: dict) -> bool:
    """True without a password; else whether the request carries a session cookie Gradio issued."""
    app = scope.get("app")
    if app is None or (getattr(app, "auth", None) is None and getattr(app, "auth_dependency", None) is None):
        return True
    tokens = getattr(app, "tokens", None)
    if tokens is None or getattr(app, "auth_dependency", None) is not None:
        return True  # an auth scheme this guard does not know: Gradio decides
    from http.cookies import CookieError, SimpleCookie

    try:
        cookies = SimpleCookie(headers.get("cookie", ""))
    except CookieError:
        return False
    return any(name.startswith("access-token") and morsel.value in tokens for name, morsel in cookies.items())


def _switched_off(path: str, method: str) -> bool:
    """Gradio routes this app does not use (answered 404)."""
    path = path.split("/file=", 1)[0].rstrip("/")
    if path.endswith("/gradio_api/runs") or "/run-history" in path:
        return True
    if "/gradio_api/" not in path:
        return False
    rest = path.split("/gradio_api/", 1)[1]
    first = rest.split("/", 1)[0]
    if first in ("mcp", "process_recording", "vibe-edit", "undo-vibe-edit", "vibe-code", "vibe-starter-queries",
                 "profiling"):
        return True
    return first == "stream" and method == "POST"  # streaming inputs (webcam, microphone): none here


async def _read_body(receive, cap: int, too_big: Refused) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Refused(400, "the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise too_big
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
