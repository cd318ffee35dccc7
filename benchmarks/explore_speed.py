"""Explore benchmarks: CLI start-up, fully cached re-run, and throughput vs plain diffusers.

    .venv/bin/python benchmarks/explore_speed.py [--repeats 5] [--count 64] [--images 8] [--size 512]

Prints one table. Every goal is compared with a baseline measured in the same run:
- `pipeline --help` wall time (goal < 0.3 s; baseline: `python -c pass`);
- fully cached re-run of a 64-candidate explore (goal < 1.5 s, and torch is never imported);
- explore throughput on tiny-random vs a plain diffusers ZImagePipeline loop over the same seeds
  (goal: our overhead ≤ 10%). Medians over repeats; the machine is noisy.
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
import time
from pathlib import Path

PY = sys.executable
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PIPELINE_OFFLINE": "1"}
PROMPT = "a red fox in snow"


def wall(cmd, repeats) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=ENV)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


PLAIN_LOOP = r"""
import sys, time, json, torch
from pipeline.models.tiny import build_tiny_pipeline
size, seeds = int(sys.argv[1]), [int(s) for s in sys.argv[2].split(",")]
pipe = build_tiny_pipeline(torch.float32); pipe.set_progress_bar_config(disable=True)
pipe(prompt=["warm up"], width=size, height=size, num_inference_steps=8, guidance_scale=0.0)
started = time.perf_counter()
for seed in seeds:
    image = pipe(prompt=[sys.argv[3]], width=size, height=size, num_inference_steps=8, guidance_scale=0.0,
                 generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    image.save(f"/tmp/_plain_{seed}.png")
print(json.dumps({"seconds": time.perf_counter() - started}))
"""

OURS = r"""
import sys, time, json
from pipeline import Pipeline
size, seeds = int(sys.argv[1]), [int(s) for s in sys.argv[2].split(",")]
with Pipeline(model="tiny-random", out=sys.argv[4], dtype="fp32") as p:
    p.explore("warm up", seeds=[0], size=(size, size))
    started = time.perf_counter()
    p.explore(sys.argv[3], seeds=seeds, size=(size, size))
    print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def throughput(size, images, repeats, tmp) -> tuple[float, float]:
    plain, ours = [], []
    for r in range(repeats):
        seeds = ",".join(str(1000 * r + i) for i in range(images))
        out = subprocess.run([PY, "-c", PLAIN_LOOP, str(size), seeds, PROMPT], check=True, capture_output=True,
                             text=True, env=ENV).stdout
        plain.append(json.loads(out.strip().splitlines()[-1])["seconds"] / images)
        out = subprocess.run([PY, "-c", OURS, str(size), seeds, PROMPT, str(Path(tmp) / f"t{r}")], check=True,
                             capture_output=True, text=True, env=ENV).stdout
        ours.append(json.loads(out.strip().splitlines()[-1])["seconds"] / images)
    return statistics.median(plain), statistics.median(ours)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--count", type=int, default=64, help="candidates of the cached re-run")
    parser.add_argument("--images", type=int, default=8, help="images per throughput measurement")
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()

    rows = []
    python_start = wall([PY, "-c", "pass"], args.repeats)
    help_time = wall([PY, "-m", "pipeline", "--help"], args.repeats)
    rows.append(("`pipeline --help`", f"{help_time:.3f} s", f"python -c pass: {python_start:.3f} s", "< 0.3 s",
                 help_time < 0.3))

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cached"
        fill = [PY, "-m", "pipeline", "explore", PROMPT, "--model", "tiny-random", "--size", "64",
                "--seeds", f"1-{args.count}", "--out", str(out), "--run", "bench"]
        subprocess.run(fill, check=True, capture_output=True, env=ENV)
        cached = wall(fill, args.repeats)
        probe = subprocess.run([PY, "-X", "importtime", *fill[1:]], capture_output=True, text=True, env=ENV)
        torch_imported = bool(re.search(r"\|\s+torch$", probe.stderr, re.MULTILINE))
        rows.append((f"cached re-run, {args.count} candidates", f"{cached:.3f} s",
                     f"torch imported: {'yes' if torch_imported else 'no'}", "< 1.5 s, no torch",
                     cached < 1.5 and not torch_imported))

        plain, ours = throughput(args.size, args.images, max(1, args.repeats // 2), tmp)
        overhead = ours / plain - 1
        rows.append((f"explore {args.size}² tiny-random, s/image", f"{ours:.3f} s",
                     f"plain diffusers loop: {plain:.3f} s", "overhead ≤ 10%", overhead <= 0.10))
        rows.append(("  overhead", f"{overhead * 100:+.1f}%", "", "", overhead <= 0.10))

    print("| measurement | ours | baseline (same run) | goal | met |")
    print("|---|---|---|---|---|")
    for name, value, base, goal, met in rows:
        print(f"| {name} | {value} | {base} | {goal} | {'yes' if met else 'no'} |")


if __name__ == "__main__":
    main()
