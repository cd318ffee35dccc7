"""What the browser app costs on top of the library (tiny model, CPU by default).

1. Explore → first candidate on screen, in headless Chromium, against ``Pipeline.explore``'s
   time to its first ``on_picture`` callback in this process (both with the model loaded).
2. Per-picture time of the app's explore endpoint (gradio_client) against ``Pipeline.explore`` on
   the same seeds, in rounds that alternate between the two, each with its own store (so both
   compute every picture); medians.
3. A run of 256 candidates: time from "Open" to all 256 thumbnails loaded in headless Chromium.

    python benchmarks/ui_overhead.py [--size 64] [--steps 2] [--count 4] [--rounds 5] [--big 256] [--model M]
    python benchmarks/ui_overhead.py --model Tongyi-MAI/Z-Image-Turbo --size 512 --steps 8   # on a GPU

Prints a Markdown table. Needs the ui and test extras and /usr/bin/chromium.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from ui_server import Server  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def library_round(pipeline, prompt, seeds, size, steps):
    first = []
    started = time.perf_counter()
    pipeline.explore(prompt, seeds=seeds, size=(size, size), steps=steps,
                     on_picture=lambda item: first or first.append(time.perf_counter() - started))
    return time.perf_counter() - started, first[0]


def app_round(client, prompt, seeds, size, steps):
    started = time.perf_counter()
    result = client.predict(prompt, "", size, size, 1, ",".join(map(str, seeds)), steps, 0, api_name="/explore")[-1]
    assert result["computed"] == len(seeds), result
    return time.perf_counter() - started


def browser_first(page, url, seeds, size, steps):
    page.goto(url, wait_until="load")
    page.locator("#prompt textarea").fill("first candidate")
    page.locator("#width input").fill(str(size))
    page.locator("#height input").fill(str(size))
    page.locator("#seeds textarea, #seeds input").first.fill(",".join(map(str, seeds)))
    page.locator("#steps input[type=number]").fill(str(steps))
    page.locator("#steps input[type=number]").press("Enter")
    started = time.perf_counter()
    page.locator("#explore").click()
    page.wait_for_function("() => [...document.querySelectorAll('#candidates img')].some(i => i.complete "
                           "&& i.naturalWidth > 0)", timeout=600_000)
    first = time.perf_counter() - started
    page.wait_for_function("(n) => /^(\\d+) of (\\d+) candidates · /.test(document.querySelector("
                           "'#status textarea').value) && document.querySelector('#status textarea').value"
                           ".includes(' computed')", arg=len(seeds), timeout=600_000)
    return first


def browser_open(page, url, run_name, count):
    page.goto(url, wait_until="load")
    page.get_by_role("tab", name="Runs").click()
    page.locator("#runs-refresh").click()
    page.wait_for_function("(n) => document.querySelector('#runs-table').innerText.includes(n)", arg=run_name)
    page.locator("#run-choice input").fill(run_name)
    page.locator("#run-choice input").press("Enter")
    page.wait_for_timeout(300)
    started = time.perf_counter()
    page.locator("#open-run").click()
    # all N in the gallery, and the ones in view loaded (the rest load lazily as the gallery scrolls)
    page.wait_for_function("(n) => { const imgs = [...document.querySelectorAll('#candidates img')];"
                           " const box = document.querySelector('#candidates').getBoundingClientRect();"
                           " const seen = imgs.filter(i => i.getBoundingClientRect().top < box.bottom);"
                           " return imgs.length === n && seen.length > 0"
                           " && seen.every(i => i.complete && i.naturalWidth > 0); }",
                           arg=count, timeout=120_000)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--big", type=int, default=256)
    parser.add_argument("--model", default="tiny-random", help="e.g. Tongyi-MAI/Z-Image-Turbo on a GPU")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from pipeline import Pipeline

    tmp = Path(tempfile.mkdtemp(prefix="ui-bench-"))
    server = Server(tmp / "app", "--model", args.model)  # the last --model wins
    rows = []
    try:
        client = server.client()
        with Pipeline(model=args.model, out=tmp / "lib") as pipeline, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # warm up both (model load, first-call costs)
            library_round(pipeline, "warm", [0], args.size, args.steps)
            app_round(client, "warm", [0], args.size, args.steps)

            lib_pp, app_pp, lib_first, web_first = [], [], [], []
            base = 1000
            for n in range(args.rounds):
                seeds = list(range(base, base + args.count))
                base += args.count
                order = (("lib", "app") if n % 2 == 0 else ("app", "lib"))
                for who in order:
                    if who == "lib":
                        total, first = library_round(pipeline, "overhead", seeds, args.size, args.steps)
                        lib_pp.append(total / len(seeds))
                        lib_first.append(first)
                    else:
                        app_pp.append(app_round(client, "overhead", seeds, args.size, args.steps) / len(seeds))
                seeds = list(range(base, base + args.count))
                base += args.count
                web_first.append(browser_first(page, server.url, seeds, args.size, args.steps))

            # a run of --big candidates, made by the library into the app's output folder
            started = time.perf_counter()
            with Pipeline(model=args.model, out=server.out) as p:
                p.explore("many candidates", seeds=list(range(args.big)), size=(args.size, args.size), steps=1,
                          run="big")
            made = time.perf_counter() - started
            print(f"lib {lib_pp} app {app_pp} lib-first {lib_first} web-first {web_first} made {made:.0f}s",
                  flush=True)
            opens = [browser_open(page, server.url, "big", args.big) for _ in range(3)]
            print(f"opens {opens}", flush=True)
            browser.close()
    finally:
        server.kill()

    med = statistics.median
    ratio = med(app_pp) / med(lib_pp)
    rows.append(("per picture, app endpoint (gradio_client)", f"{med(app_pp) * 1000:.0f} ms",
                 f"{med(lib_pp) * 1000:.0f} ms (Pipeline.explore)", f"{(ratio - 1) * 100:+.1f} %"))
    rows.append(("Explore click → first candidate on screen (Chromium)", f"{med(web_first) * 1000:.0f} ms",
                 f"{med(lib_first) * 1000:.0f} ms (first on_picture)",
                 f"{(med(web_first) - med(lib_first)) * 1000:+.0f} ms"))
    rows.append((f"open a run of {args.big} candidates (Chromium, all thumbnails loaded)",
                 f"{med(opens) * 1000:.0f} ms", "goal < 1000 ms", "all in the gallery, those in view loaded"))
    print(f"\n{args.rounds} interleaved rounds of {args.count} pictures, {args.size}², {args.steps} steps, "
          f"{args.model}; medians (the big run took {made:.0f} s to make)\n")
    print("| measure | app | baseline | difference |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
