"""Scale-out: the same explore in 1 process and in 2 processes (torchrun, gloo) on this machine.

    .venv/bin/python benchmarks/scale_out.py [--seeds 8] [--size 128] [--repeats 3]

Each repeat renders every seed from an empty store (all misses), as a user would run it,
so the wall time includes starting Python, importing torch/diffusers and building the
model in every process. Rows:

    1 process  x 2 threads   the default single-process run (torch uses both cores)
    1 process  x 1 thread    the baseline whose pictures the 2-process run equals bit for bit
    2 processes x 1 thread   torchrun --standalone --nproc_per_node 2 (OMP_NUM_THREADS=1 each)

It prints medians, the speed-up over both single-process rows, and the median seconds
per picture as stored in the records (the render alone), to show what bounds the speed-up.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "a red fox in snow"


def run_once(processes: int, threads: int, seeds: int, size: int, root: Path) -> tuple[float, list[float]]:
    out, store = root / "out", root / "store"
    args = ["explore", PROMPT, "--model", "tiny-random", "--size", str(size), "--seeds", f"1-{seeds}",
            "--run", "bench", "--out", str(out)]
    if processes == 1:
        command = [sys.executable, "-m", "pipeline", *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                   str(processes), "-m", "pipeline", "--", *args]
    env = dict(os.environ, PIPELINE_STORE=str(store), OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1",
               PIPELINE_OFFLINE="1")
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    renders = []
    for path in (store / "objects").glob("*/*.json"):
        record = json.loads(path.read_text())
        if record.get("suffix") == ".png":
            renders.append(record["seconds"])
    assert len(renders) == seeds, f"expected {seeds} pictures, found {len(renders)}"
    return wall, renders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    configs = [(1, 2), (1, 1), (2, 1)]
    results: dict[tuple[int, int], dict] = {c: {"wall": [], "render": []} for c in configs}
    for repeat in range(args.repeats):
        for processes, threads in configs:  # interleaved, so load on the machine hits every row alike
            with tempfile.TemporaryDirectory(prefix="scale-out-") as tmp:
                wall, renders = run_once(processes, threads, args.seeds, args.size, Path(tmp))
            results[(processes, threads)]["wall"].append(wall)
            results[(processes, threads)]["render"].extend(renders)
            print(f"  repeat {repeat + 1}: {processes} process(es) x {threads} thread(s): {wall:.1f} s",
                  file=sys.stderr)

    median = {c: statistics.median(r["wall"]) for c, r in results.items()}
    print(f"explore, tiny-random, {args.seeds} seeds at {args.size}x{args.size}, median of {args.repeats} "
          f"(os.cpu_count()={os.cpu_count()}, load average {os.getloadavg()[0]:.1f})")
    print(f"| {'processes x threads':<20} | {'wall s':>7} | {'vs 1x2':>6} | {'vs 1x1':>6} | "
          f"{'render s/img':>12} | {'rest s':>6} |")
    print(f"|{'-' * 22}|{'-' * 9}|{'-' * 8}|{'-' * 8}|{'-' * 14}|{'-' * 8}|")
    costs = {}
    for processes, threads in configs:
        wall = median[(processes, threads)]
        render = statistics.median(results[(processes, threads)]["render"])
        rest = wall - render * args.seeds / processes  # start-up, imports, model build, writing
        print(f"| {f'{processes} x {threads}':<20} | {wall:7.1f} | {median[(1, 2)] / wall:5.2f}x | "
              f"{median[(1, 1)] / wall:5.2f}x | {render:12.3f} | {rest:6.1f} |")
        costs[(processes, threads)] = (rest, render)
    # What bounds the speed-up: every process pays the fixed cost ("rest": Python, torch, the model)
    # before its share; with N pictures, wall(P) ~ rest_P + N * render_P / P.
    (rest1, render1), (rest2, render2) = costs[(1, 1)], costs[(2, 1)]
    projected = ", ".join(f"{n} pictures {(rest1 + n * render1) / (rest2 + n * render2 / 2):.2f}x"
                          for n in (args.seeds, 100, 1000, 10000))
    print(f"2 x 1 over 1 x 1, projected from the fixed cost and the render time: {projected}")


if __name__ == "__main__":
    main()
