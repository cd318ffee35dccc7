"""`pipeline ui` hardened: a real server in its own process, on loopback, asked what an attacker would ask.

Uploads only of images, capped, and only from the page's own origin; request bodies capped; a page
of another site (or another Host: DNS rebinding) refused; failed logins locked out with 429;
Gradio's run-history routes off; user errors one line in the log; a busy port and an --out that is
a file refused at start in one sentence; the cache removed when the server stops.
Every assertion is on a status code, a file or a line of output: nothing is timed.
"""
from __future__ import annotations

import http.client
import io
import json
import socket
import time
from pathlib import Path

import pytest

from conftest import run_cli
from ui_server import Server, free_port, module_server

pytest.importorskip("gradio", reason="the browser app's extra is not installed: pip install '.[ui]'")

MB = 2**20
UPLOAD_CAP = 30 * MB + 2**16  # one 30 MB image and its multipart wrapping (guard.py)
BODY_BYTES = 4 * MB


server = module_server("ui-security", process=True)  # its tests read the server's log


def request(srv, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    """(status, headers, body) of one plain HTTP request, headers as given (no Origin unless named)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "----pipeline-test-boundary"
    parts = []
    for name, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def upload(srv, files, **headers):
    body, content_type = multipart(files)
    return request(srv, "POST", "/gradio_api/upload", body, {"Content-Type": content_type, **headers})


def png_bytes(size=(32, 32)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format="PNG")
    return buffer.getvalue()


def over_the_cap(srv, path: str, size: int, content_type: str) -> int:
    """The status for a chunked body of ``size`` bytes (no Content-Length to refuse it by). One chunk,
    every byte of it sent before the answer is read and nothing after (no chunk end): the server
    has read all that came, so it closes a clean connection."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=120) as sock:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nContent-Type: {content_type}\r\n"
                      f"Transfer-Encoding: chunked\r\n\r\n{size:x}\r\n").encode())
        block, left = b"\0" * MB, size
        while left:
            sock.sendall(block[:min(left, MB)])
            left -= min(left, MB)
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    return int(answer.split(b" ", 2)[1])


def cache_files(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.is_file() and p.name != "owner.pid")


def test_uploads_take_only_images_under_the_cap(server):
    status, _, body = upload(server, [("red.png", png_bytes())])
    assert status == 200, body
    stored = Path(json.loads(body)[0])
    assert stored.is_file() and stored.read_bytes() == png_bytes()
    root = stored.parents[1]  # the server's own cache folder: <cache>/<hash>/red.png
    assert root.name.startswith("pipeline-ui-") and (root.stat().st_mode & 0o777) == 0o700
    before = cache_files(root)

    refused = {
        "a text file": [("notes.txt", b"hello")],
        "HTML named .png": [("evil.png", b"<html><script>alert(1)</script></html>")],
        "a PNG named .html": [("evil.html", png_bytes())],
        "an SVG": [("logo.svg", b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>")],
        "five images at once": [(f"{i}.png", png_bytes()) for i in range(5)],
    }
    for what, files in refused.items():
        status, _, body = upload(server, files)
        assert status in (400, 413, 415), (what, status, body)
    # a body over the cap is refused by its declared length, before it is read ...
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    conn.putrequest("POST", "/gradio_api/upload")
    conn.putheader("Content-Type", "multipart/form-data; boundary=x")
    conn.putheader("Content-Length", str(300 * MB))
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()
    # ... and without one, once 30 MB have come
    assert over_the_cap(server, "/gradio_api/upload", UPLOAD_CAP + 1, "multipart/form-data; boundary=x") == 413
    assert cache_files(root) == before  # nothing refused was written
    assert server.get("/") == 200  # and the server is fine


def test_a_page_of_another_site_cannot_post(server):
    png = png_bytes()
    for origin in ("http://evil.example", f"http://evil.example:{server.port}", "null",
                   f"http://localhost:{server.port + 1}"):
        status, _, _ = upload(server, [("red.png", png)], Origin=origin)
        assert status == 403, origin
        status, _, _ = request(server, "POST", "/gradio_api/queue/join", b"{}",
                               {"Content-Type": "application/json", "Origin": origin})
        assert status == 403, origin
    status, _, _ = request(server, "POST", "/gradio_api/queue/join", b"{}",
                           {"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"})
    assert status == 403
    # the page's own origin gets through (422: the empty call is incomplete, but it reached Gradio)
    status, _, _ = upload(server, [("red.png", png)], Origin=f"http://127.0.0.1:{server.port}")
    assert status == 200
    status, _, _ = request(server, "POST", "/gradio_api/queue/join", b"{}",
                           {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{server.port}"})
    assert status == 422
    # a DNS-rebinding page reaches a loopback server under its own host name: refused
    status, _, _ = request(server, "GET", "/", headers={"Host": f"evil.example:{server.port}"})
    assert status == 403
    assert request(server, "GET", "/", headers={"Host": f"localhost:{server.port}"})[0] == 200


def test_request_bodies_are_capped(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    conn.putrequest("POST", "/gradio_api/queue/join")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(200 * MB))
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()
    assert over_the_cap(server, "/gradio_api/queue/join", BODY_BYTES + 1, "application/json") == 413
    # files go only to the upload route
    body, content_type = multipart([("red.png", png_bytes())])
    assert request(server, "POST", "/gradio_api/queue/join", body, {"Content-Type": content_type})[0] == 415
    assert server.get("/") == 200


def test_run_history_and_unused_routes_answer_404(server):
    for path in ("/gradio_api/runs", "/gradio_api/runs/", "/gradio_api/run-history/records",
                 "/gradio_api/run-history/buckets", "/gradio_api/mcp/schema"):
        assert server.get(path) == 404, path
    for path in ("/gradio_api/run-history/connect", "/gradio_api/process_recording", "/gradio_api/stream/x",
                 "/gradio_api/vibe-edit"):
        assert request(server, "POST", path, b"{}", {"Content-Type": "application/json"})[0] == 404, path


def test_the_banner_names_a_url_that_works_and_user_errors_are_one_line(server):
    from pipeline.web.app.server import banner, urls

    log = server.log.read_text()
    assert log.splitlines()[0].startswith(f"pipeline ui: http://127.0.0.1:{server.port}  (output folder ")
    assert urls("0.0.0.0", 7860)[0] == "http://127.0.0.1:7860"
    assert not any("0.0.0.0" in url for url in urls("0.0.0.0", 7860))
    lan = banner("0.0.0.0", 7860, Path("outputs"))
    assert f"http://{socket.gethostname()}:7860" in lan and "0.0.0.0" not in lan
    assert "plain HTTP" in lan and "TLS" in lan  # on a network the banner says the connection is not encrypted

    client = server.client()
    with pytest.raises(Exception, match="multiple of 16"):
        client.predict("a cat", "", 500, 500, 1, "1", 2, 0, api_name="/explore")
    with pytest.raises(Exception):
        client.predict("no-such-run", api_name="/open_run")
    # (the server logs an error before it answers: the lines are in the log by now)
    assert "Traceback" not in server.log.read_text()


def test_repeated_failed_logins_are_refused_with_429(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("# who may log in\nalice:correct horse\n")
    srv = Server(tmp_path / "outputs", "--auth-file", str(users))
    try:
        def login(password):
            body = f"username=alice&password={password.replace(' ', '+')}".encode()
            return request(srv, "POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})

        status, headers, _ = login("correct horse")
        assert status == 200
        cookie = headers["set-cookie"].split(";", 1)[0]  # the last of Gradio's two session cookies
        # uploads only once logged in; a stranger's body is not read past a login form's size
        assert upload(srv, [("red.png", png_bytes())], Cookie=cookie)[0] == 200
        assert upload(srv, [("red.png", png_bytes())])[0] == 401
        status, _, _ = request(srv, "POST", "/gradio_api/queue/join", b"{" + b" " * 100_000 + b"}",
                               {"Content-Type": "application/json"})
        assert status == 413
        # behind a TLS proxy that passes Host through: the page is https://pics.example.lan, and welcome
        assert request(srv, "GET", "/", headers={"Host": "pics.example.lan"})[0] == 200
        status, _, _ = request(srv, "POST", "/login", b"username=alice&password=wrong",
                               {"Content-Type": "application/x-www-form-urlencoded", "Host": "pics.example.lan",
                                "Origin": "https://pics.example.lan"})
        assert status == 400  # a wrong password, not a refused origin
        assert [login("wrong")[0] for _ in range(3)] == [400] * 3
        assert login("correct horse")[0] == 200  # a success forgets the failures ...
        assert [login("wrong")[0] for _ in range(5)] == [400] * 5  # ... so five more are answered
        status, headers, body = login("correct horse")  # then even the right password waits
        assert status == 429 and int(headers["retry-after"]) >= 30, (status, headers)
        assert b"too many failed logins" in body
        assert srv.get("/gradio_api/info") in (401, 403)
    finally:
        srv.kill()
    assert "correct horse" not in srv.log.read_text()


def test_a_busy_port_is_one_sentence_and_the_cache_goes_when_the_server_stops(tmp_path):
    srv = Server(tmp_path / "outputs")
    try:
        status, _, body = upload(srv, [("red.png", png_bytes())])
        assert status == 200
        root = Path(json.loads(body)[0]).parents[1]
        proc = run_cli("ui", "--model", "tiny-random", "--out", tmp_path / "other", "--port", srv.port, check=False)
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines() == [
            f"error: port {srv.port} is already in use on 127.0.0.1 (another `pipeline ui`?): "
            f"choose a free one with --port, e.g. --port {srv.port + 1}"]
        assert not (tmp_path / "other").exists()
    finally:
        srv.kill()
    assert srv.proc.returncode is not None and not root.exists()


def test_a_port_taken_by_anything_else_is_the_same_sentence(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli("ui", "--model", "tiny-random", "--out", tmp_path / "o", "--port", port, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: port {port} is already in use on 127.0.0.1 (another `pipeline ui`?): "
        f"choose a free one with --port, e.g. --port {port + 1}"]


def test_out_naming_a_file_is_refused_at_start(tmp_path):
    afile = tmp_path / "pictures.png"
    afile.write_bytes(b"not a folder")
    proc = run_cli("ui", "--model", "tiny-random", "--out", afile, "--port", free_port(), check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: --out {afile} is a file: give a folder (it is created if missing)"]
    assert afile.read_bytes() == b"not a folder"
    proc = run_cli("ui", "--model", "tiny-random", "--out", afile / "sub", "--port", free_port(), check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: --out {afile / 'sub'}: {afile} is a file, not a folder"]


def test_login_lockout_doubles_and_a_success_clears_it():
    from pipeline.web.app.guard import LoginLimiter

    now = [1000.0]
    limiter = LoginLimiter(free=5, first=60, longest=900, clock=lambda: now[0])
    for _ in range(4):
        limiter.failed("10.0.0.2")
    assert limiter.wait("10.0.0.2") == 0
    limiter.failed("10.0.0.2")
    assert limiter.wait("10.0.0.2") == 60 and limiter.wait("10.0.0.3") == 0  # per client
    now[0] += 61
    assert limiter.wait("10.0.0.2") == 0
    limiter.failed("10.0.0.2")
    assert limiter.wait("10.0.0.2") == 120
    for _ in range(10):
        limiter.failed("10.0.0.2")
    assert limiter.wait("10.0.0.2") == 900  # at most 15 minutes
    limiter.succeeded("10.0.0.2")
    assert limiter.wait("10.0.0.2") == 0


def test_the_cache_deletes_uploads_then_old_files_then_the_oldest_past_its_size(tmp_path):
    from pipeline.web.app.cache import Cache

    offset = [0.0]
    cache = Cache(tmp_path / "cache", max_bytes=1000, max_age=3600, upload_age=600,
                  clock=lambda: time.time() + offset[0])
    root = cache.root
    root.mkdir()
    for name in ("a", "b", "c"):
        (root / name).mkdir()
        (root / name / f"{name}.png").write_bytes(b"x" * 300)
    cache.uploaded([str(root / "a" / "a.png")])
    assert cache.sweep() == 900 and cache_files(root) == ["a.png", "b.png", "c.png"]
    offset[0] = 601  # the upload has waited long enough; the pictures shown have not
    assert cache.sweep() == 600 and cache_files(root) == ["b.png", "c.png"] and not (root / "a").exists()
    assert cache.make_room(300) and cache_files(root) == ["b.png", "c.png"]
    assert cache.make_room(500) and len(cache_files(root)) == 1  # the oldest went
    assert not cache.make_room(2000)  # never more than the cap
    offset[0] = 3601
    assert cache.sweep() == 0 and cache_files(root) == []
    cache.close()
    assert not root.exists()


def test_a_real_browser_on_another_origin_is_refused(server, tmp_path):
    """Chromium on a page of another port posts a form and a fetch to the upload route: refused, nothing
    written (browsers send Origin on every cross-origin POST; that is what the guard relies on)."""
    import http.server
    import threading

    from browsers import launched, require

    require()
    status, _, body = upload(server, [("red.png", png_bytes())])
    root = Path(json.loads(body)[0]).parents[1]
    before = cache_files(root)
    (tmp_path / "page.html").write_text("<p>another site</p>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    target = f"http://127.0.0.1:{server.port}/gradio_api/upload"
    try:
        with launched() as browser:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{other.server_port}/page.html")
            page.evaluate("""async (target) => {
                const data = new FormData();
                data.append('files', new Blob([new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10])]), 'x.png');
                try { await fetch(target, {method: 'POST', body: data, mode: 'no-cors'}); } catch (e) {}  // blocked: fine
            }""", target)
            page.evaluate("""(target) => {
                const form = document.createElement('form');
                form.method = 'POST'; form.enctype = 'multipart/form-data'; form.action = target;
                document.body.appendChild(form); form.submit();
            }""", target)
            page.wait_for_url(target, timeout=120_000)
            text = page.inner_text("body")
    finally:
        other.shutdown()
    assert text.strip() == "cross-origin request refused"
    assert cache_files(root) == before
