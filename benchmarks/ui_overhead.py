"""What the browser app costs on top of the CLI (tiny model, CPU by default). Not a test.

1. Explore N candidates (default 128 at 64², 2 steps) by clicking Explore in headless Chromium,
   until all N cards are drawn and the status says the run is done; against `pipeline explore`
   (a fresh process, as a user runs it) and `Pipeline.explore` in-process, on the same seeds, each
   with its own store so all three compute every picture. Goal: browser ≤ 1.3 × CLI.
2. Event bytes per candidate as explore streams (the app's queue protocol, as the page receives it):
   the first quarter of the run against the last quarter. Goal: flat.
3. Open a run of 256 candidates (a click on its row in Runs) until all 256 cards are in the grid and those in view
   have loaded. Goal: < 1 s.

    python benchmarks/ui_overhead.py [--count 128] [--size 64] [--steps 2] [--rounds 1] [--big 256] [--model M]
    python benchmarks/ui_overhead.py --model Tongyi-MAI/Z-Image-Turbo --size 512 --steps 8 --count 32   # a GPU

Prints a Markdown table with the load average. Needs the ui and test extras and /usr/bin/chromium.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import cli_env  # noqa: E402
from test_ui_stream import added_items, explore_events  # noqa: E402
from ui_server import Server  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
WAIT = 1_800_000


def cli_round(out: Path, model: str, seeds: str, size: int, steps: int) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline", "explore", "cli baseline", "--seeds", seeds, "--size",
                    str(size), "--steps", str(steps), "--model", model, "--out", str(out)], check=True,
                   env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def library_round(pipeline, seeds: list[int], size: int, steps: int) -> float:
    started = time.perf_counter()
    pipeline.explore("library baseline", seeds=seeds, size=(size, size), steps=steps)
    return time.perf_counter() - started


def browser_round(browser, url: str, seeds: str, count: int, size: int, steps: int) -> float:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(url, wait_until="load")
    page.locator("#prompt textarea").fill("browser run")
    page.locator("#width input").fill(str(size))
    page.locator("#height input").fill(str(size))
    page.locator("#seeds textarea, #seeds input").first.fill(seeds)
    page.locator("#steps input[type=number]").fill(str(steps))
    page.locator("#steps input[type=number]").press("Enter")
    started = time.perf_counter()
    page.locator("#explore").click()
    expect(page.locator("#status textarea, #status input").first).to_have_value(
        re.compile(rf"^{count} of {count} candidates · {count} computed"), timeout=WAIT)
    expect(page.locator("#candidates .pcard")).to_have_count(count, timeout=WAIT)
    took = time.perf_counter() - started
    context.close()
    return took


def browser_open(browser, url: str, run_name: str, count: int) -> float:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(url, wait_until="load")
    page.get_by_role("tab", name="Runs").click()
    page.locator("#runs-refresh").click()
    row = page.locator("#runs-table [role=gridcell]").filter(has_text=run_name).first
    row.wait_for(timeout=WAIT)
    page.wait_for_timeout(300)
    started = time.perf_counter()
    row.click()  # a row click opens the run
    done = ("(n) => { const imgs = [...document.querySelectorAll('#candidates .pthumb')];"
            " const seen = imgs.filter(i => i.getBoundingClientRect().top < innerHeight);"
            " return imgs.length === n && seen.length > 0 && seen.every(i => i.complete && i.naturalWidth > 0); }")
    while not page.evaluate(done, count):  # all cards in the grid, those in view loaded
        time.sleep(0.005)
    took = time.perf_counter() - started
    context.close()
    return took


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=128)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--big", type=int, default=256)
    parser.add_argument("--model", default="tiny-random", help="e.g. Tongyi-MAI/Z-Image-Turbo on a GPU")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from pipeline import Pipeline

    tmp = Path(tempfile.mkdtemp(prefix="ui-bench-"))
    loads = [os.getloadavg()[0]]
    server = Server(tmp / "app", "--model", args.model)  # the last --model wins
    cli, lib, web = [], [], []
    try:
        with Pipeline(model=args.model, out=tmp / "lib") as pipeline, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=["--no-sandbox", "--disable-gpu"])
            library_round(pipeline, [0], args.size, args.steps)  # warm up: model load, first-call costs
            browser_round(browser, server.url, "0", 1, args.size, args.steps)
            base = 1000
            for n in range(args.rounds):
                seeds = list(range(base, base + args.count))
                text = f"{seeds[0]}-{seeds[-1]}"
                base += args.count
                order = ("cli", "lib", "web") if n % 2 == 0 else ("web", "lib", "cli")
                for who in order:
                    if who == "cli":
                        cli.append(cli_round(tmp / f"cli-{n}", args.model, text, args.size, args.steps))
                    elif who == "lib":
                        lib.append(library_round(pipeline, seeds, args.size, args.steps))
                    else:
                        web.append(browser_round(browser, server.url, text, args.count, args.size, args.steps))
                    loads.append(os.getloadavg()[0])
                    print(f"round {n}: {who} done, cli {cli} lib {lib} web {web}", flush=True)

            # event bytes per candidate, on seeds not yet in the server's store
            events = explore_events(server, f"{base}-{base + args.count - 1}", size=args.size, steps=args.steps)
            diffs = [e["msg"]["output"]["data"][0] for e in events if e["msg"]["msg"] == "process_generating"][1:]
            streamed = [e for e in events if e["msg"]["msg"] == "process_generating"][1:-1]  # the last: result JSON
            per = [(len(json.dumps(d)), added_items(d), e["bytes"]) for d, e in zip(diffs, streamed) if added_items(d)]
            quarter = max(1, len(per) // 4)

            def bytes_per(rows, which):
                return sum(r[which] for r in rows) / sum(r[1] for r in rows)

            early_grid, late_grid = bytes_per(per[:quarter], 0), bytes_per(per[-quarter:], 0)
            early_all, late_all = bytes_per(per[:quarter], 2), bytes_per(per[-quarter:], 2)
            loads.append(os.getloadavg()[0])

            # a run of --big candidates, made by the library into the app's output folder
            with Pipeline(model=args.model, out=server.out) as p:
                p.explore("many candidates", seeds=list(range(args.big)), size=(args.size, args.size), steps=1,
                          run="big")
            opens = [browser_open(browser, server.url, "big", args.big) for _ in range(3)]
            loads.append(os.getloadavg()[0])
            browser.close()
    finally:
        server.kill()

    med = statistics.median
    print(f"\n{args.rounds} round(s) of {args.count} candidates, {args.size}², {args.steps} steps, {args.model}; "
          f"medians; load average {min(loads):.1f}–{max(loads):.1f} on {os.cpu_count()} cores\n")
    print("| measure | app | baseline | ratio / goal |\n|---|---|---|---|")
    print(f"| explore {args.count} in Chromium (click → all cards drawn) vs `pipeline explore` (fresh process) | "
          f"{med(web):.1f} s | {med(cli):.1f} s | {med(web) / med(cli):.2f}× (goal ≤ 1.3×) |")
    print(f"| … vs `Pipeline.explore` in-process (model loaded) | {med(web):.1f} s | {med(lib):.1f} s | "
          f"{med(web) / med(lib):.2f}× |")
    print(f"| streamed grid bytes per candidate, first vs last quarter of {args.count} | {late_grid:.0f} B | "
          f"{early_grid:.0f} B | {late_grid / early_grid:.2f}× (goal: flat) |")
    print(f"| whole event bytes per candidate (grid, status, button, bar), first vs last quarter | {late_all:.0f} B | "
          f"{early_all:.0f} B | {late_all / early_all:.2f}× |")
    print(f"| open a run of {args.big} candidates (Runs row click → all cards, those in view loaded) | "
          f"{med(opens) * 1000:.0f} ms | goal < 1000 ms | {' '.join(f'{o * 1000:.0f}' for o in opens)} ms |")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
