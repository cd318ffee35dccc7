"""The gallery page (RUN/index.html): made by explore, rebuilt by `pipeline gallery`, safe and self-contained."""
from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from pipeline.web import gallery
from pipeline.web.thumbs import THUMB_SIZE
from pipeline.cli import main

from conftest import cli_env, run_cli

HOSTILE = 'fox <img src=x onerror=alert(1)> </script><script>alert(2)</script> & "q" \u2028 \u2029 end'


@pytest.fixture(scope="module")
def explored(tmp_path_factory) -> Path:
    """One real tiny-model explore (3 seeds at 64²), shared; tests copy it before changing it."""
    out = tmp_path_factory.mktemp("gallery") / "outputs"
    run_cli("explore", "a red fox in snow", "--model", "tiny-random", "--size", "64", "--seeds", "3,7,11",
            "--out", out, "--run", "fox")
    return out / "fox"


@pytest.fixture
def run_copy(explored, tmp_path) -> Path:
    dest = tmp_path / "outputs" / "fox"
    shutil.copytree(explored, dest)
    return dest


def page_data(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="gallery-data">(.*?)</script>', text, re.S)
    return json.loads(match.group(1))


def set_run(run_dir: Path, **changes) -> dict:
    data = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    data.update(changes)
    (run_dir / "run.json").write_text(json.dumps(data), encoding="utf-8")
    return data


def test_explore_writes_a_self_contained_page(explored):
    page = explored / "index.html"
    text = page.read_text(encoding="utf-8")
    assert (explored / "explore" / "contact.png").is_file()  # terminal users keep their contact sheet
    data = page_data(page)
    assert [g["seed"] for g in data["groups"]] == ["3", "7", "11"]
    assert data["run"]["params"]["prompt"] == "a red fox in snow"
    for seed in (3, 7, 11):
        assert f'data-seed="{seed}"' in text
    # no network, nothing external: no links, imports, remote URLs or external scripts
    assert not re.search(r"https?://|<link\b|@import|url\(|<script[^>]*\bsrc=", text)
    # full pictures are not in the page; they load on enlarge from the run's own files
    assert "explore/seed-3.png" in text and 'src="explore/' not in text


def test_a_thumbnail_does_not_bring_back_a_run_folder_removed_meanwhile(tmp_path):
    """The app lists its runs (making their thumbnails) while a shell or another tab removes one: the picture was
    read, the folder is gone by the time its thumbnail is written; the thumbnail is not made and the folder stays
    gone (it used to come back as RUN/thumbs/ alone, and a removal racing the listing failed "not empty")."""
    from pipeline.web.thumbs import Thumbs

    picture = tmp_path / "read-before.png"
    Image.new("RGB", (64, 48), (200, 90, 40)).save(picture)
    run_dir = tmp_path / "outputs" / "20261208-101010-removed"
    assert Thumbs(run_dir).get(picture, "explore", 1, "k") == (None, (64, 48))
    assert not run_dir.exists() and not run_dir.parent.exists()
    run_dir.mkdir(parents=True)  # the same, with the run there: its thumbnail is made
    url, size = Thumbs(run_dir).get(picture, "explore", 1, "k")
    assert size == (64, 48) and (run_dir / url).is_file()


def test_thumbnails_are_small_webp_and_made_once(run_copy):
    data = page_data(run_copy / "index.html")
    thumbs = [run_copy / g["candidate"]["thumb"] for g in data["groups"]]
    for thumb in thumbs:
        with Image.open(thumb) as image:
            assert image.format == "WEBP" and max(image.size) <= THUMB_SIZE
    stamps = [t.stat().st_mtime_ns for t in thumbs]
    thumbs[1].unlink()
    gallery.write_gallery(run_copy)
    assert thumbs[1].is_file()  # a missing thumbnail is made again
    assert [thumbs[0].stat().st_mtime_ns, thumbs[2].stat().st_mtime_ns] == [stamps[0], stamps[2]]  # others kept

    # a changed picture gets a new thumbnail; the stale one goes
    picture = run_copy / "explore" / "seed-3.png"
    picture.unlink()  # (it is a hard link into the store: replace it, do not write through it)
    Image.new("RGB", (300, 150), "red").save(picture)
    gallery.write_gallery(run_copy)
    new = run_copy / page_data(run_copy / "index.html")["groups"][0]["candidate"]["thumb"]
    assert new != thumbs[0] and not thumbs[0].exists()
    with Image.open(new) as image:
        assert image.size == (256, 128) and image.getpixel((10, 10))[0] > 200
    assert not list((run_copy / "thumbs").glob(".*.tmp"))


def test_gallery_command_rebuilds_and_prints_the_path(run_copy):
    (run_copy / "index.html").unlink()
    out = run_copy.parent
    proc = run_cli("gallery", "--out", out, "fox")
    assert proc.stdout.strip() == str(run_copy / "index.html")
    assert (run_copy / "index.html").is_file()
    proc = run_cli("gallery", run_copy)  # a path works from anywhere
    assert proc.stdout.strip() == str(run_copy / "index.html")


def test_gallery_uses_the_latest_run(explored):
    proc = run_cli("gallery", "--out", explored.parent)
    assert Path(proc.stdout.strip()).resolve() == (explored / "index.html").resolve()


def test_gallery_errors_are_one_sentence(tmp_path):
    proc = run_cli("gallery", "--out", tmp_path / "nothing", check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no run found") and "Traceback" not in proc.stderr
    proc = run_cli("gallery", tmp_path, check=False)
    assert proc.returncode == 2 and "is not a run directory" in proc.stderr


def test_open_uses_the_web_browser(run_copy, monkeypatch):
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    result = CliRunner().invoke(main, ["gallery", str(run_copy), "--open"])
    assert result.exit_code == 0, result.output
    assert opened == [(run_copy / "index.html").resolve().as_uri()]


def test_gallery_imports_no_torch(run_copy):
    code = ("import sys; from pipeline.cli import main\n"
            "try:\n    main(['gallery', sys.argv[1]])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, 'heavy import'\n")
    subprocess.run([sys.executable, "-c", code, str(run_copy)], check=True, env=cli_env(), capture_output=True)


def test_hostile_text_is_escaped_everywhere(run_copy):
    set_run(run_copy, prompt=HOSTILE, negative="</script><b>x</b>", model_name="<i>m</i>")
    hostile_dir = run_copy.parent / '<b>run "x" &amp; \'y'
    run_copy.rename(hostile_dir)
    text = gallery.write_gallery(hostile_dir).read_text(encoding="utf-8")
    assert "<img src=x" not in text and "<b>" not in text and "<i>m" not in text
    assert text.count("<script") == 2 and text.count("</script") == 2  # only the page's own two
    embedded = text.split('id="gallery-data">', 1)[1].split("</script>", 1)[0]
    assert not set("<>&\u2028\u2029") & set(embedded)  # JSON in a script: no way out, no JS line terminators
    assert "&lt;img src=x onerror=alert(1)&gt;" in text  # shown as text
    data = page_data(hostile_dir / "index.html")
    assert data["run"]["params"]["prompt"] == HOSTILE and data["run"]["dir"] == str(hostile_dir.resolve())


def test_content_security_policy_allows_only_the_page_script(explored):
    text = (explored / "index.html").read_text(encoding="utf-8")
    csp = html.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text).group(1))
    scripts = re.findall(r"<script>(.*?)</script>", text, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode("utf-8")).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp and "unsafe" not in csp


def test_refined_and_upscaled_pictures_sit_next_to_their_candidate(run_copy):
    for folder, name, size in (("refine", "seed-7.png", (128, 128)), ("upscale", "seed-7.png", (512, 512)),
                               ("upscale", "photo.png", (300, 200))):
        (run_copy / folder).mkdir(exist_ok=True)
        Image.new("RGB", size, "blue").save(run_copy / folder / name)
    set_run(run_copy, refine={"pictures": [{"seed": 7, "path": "refine/seed-7.png", "mode": "hires",
                                            "strength": 0.5, "width": 128, "height": 128}]},
            upscale={"pictures": [{"seed": 7, "path": "upscale/seed-7.png", "scale": 4},
                                  {"path": "upscale/photo.png", "scale": 4}]})
    page = gallery.write_gallery(run_copy)
    data = page_data(page)
    by_seed = {g["seed"]: g for g in data["groups"]}
    assert [(r["stage"], r["size"]) for r in by_seed["7"]["results"]] == [("refine", [128, 128]),
                                                                         ("upscale", [512, 512])]
    assert by_seed["7"]["results"][0]["params"]["strength"] == 0.5
    assert by_seed["3"]["results"] == [] and by_seed["11"]["results"] == []
    assert [o["path"] for o in data["others"]] == ["upscale/photo.png"]
    text = page.read_text(encoding="utf-8")
    card = re.search(r'<div class="card"[^>]*data-seed="7".*?(?=<div class="card"|</main>)', text, re.S).group(0)
    assert "refined" in card and "upscaled ×4" in card
    for result in by_seed["7"]["results"] + data["others"]:
        with Image.open(run_copy / result["thumb"]) as image:
            assert max(image.size) <= 256


def test_missing_or_broken_pictures_show_as_missing(run_copy):
    (run_copy / "explore" / "seed-7.png").unlink()
    (run_copy / "explore" / "seed-11.png").unlink()
    (run_copy / "explore" / "seed-11.png").write_bytes(b"not a png")
    data = page_data(gallery.write_gallery(run_copy))
    assert [g["candidate"]["thumb"] is None for g in data["groups"]] == [False, True, True]
    assert (run_copy / "index.html").read_text(encoding="utf-8").count('class="thumb missing"') == 2


def test_huge_seeds_survive_javascript_numbers(run_copy):
    data = json.loads((run_copy / "run.json").read_text(encoding="utf-8"))
    data["explore"]["pictures"][0]["seed"] = 2**64 - 1
    (run_copy / "run.json").write_text(json.dumps(data), encoding="utf-8")
    page = page_data(gallery.write_gallery(run_copy))
    assert page["groups"][0]["seed"] == str(2**64 - 1)
    assert page["groups"][0]["candidate"]["params"]["seed"] == str(2**64 - 1)


def test_script_json_escapes_what_could_end_a_script():
    text = gallery.script_json({"p": "</script><!-- & \u2028\u2029 >"})
    assert not set("<>&\u2028\u2029") & set(text)
    assert json.loads(text) == {"p": "</script><!-- & \u2028\u2029 >"}


def test_page_write_is_atomic(run_copy, monkeypatch):
    before = (run_copy / "index.html").read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gallery, "atomic_write", boom)
    from pipeline.core.errors import UserError

    (run_copy / "thumbs").rename(run_copy / "old-thumbs")  # force thumbnail writes too
    with pytest.raises(UserError, match="disk is full"):
        gallery.write_gallery(run_copy)
    assert (run_copy / "index.html").read_bytes() == before
    assert not [p for p in os.listdir(run_copy) if p.endswith(".tmp")]


def test_python_api_rebuilds_the_page(run_copy):
    from pipeline.api import Pipeline

    (run_copy / "index.html").unlink()
    with Pipeline(model="tiny-random", out=run_copy.parent) as p:
        assert p.gallery("fox") == run_copy / "index.html"
    assert (run_copy / "index.html").is_file()
