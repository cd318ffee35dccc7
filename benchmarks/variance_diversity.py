"""Seed variance: how much more the candidates of one prompt differ with `--variance` (GPU, real model).

    .venv/bin/python benchmarks/variance_diversity.py [--model Tongyi-MAI/Z-Image-Turbo] [--seeds 16]
        [--variances 0,0.1,0.3,0.5] [--size 512] [--out /tmp/variance-bench]

For each prompt and variance, explores SEEDS seeds (all variances share the seeds and one loaded
model; variance 0 is the baseline of the same run) and reports the candidates' diversity: the mean
over all pairs of candidates of 1 − Pearson correlation of their 64×64 grey thumbnails (0: identical
pictures, about 1: unrelated ones), and its ratio to variance 0. It also reports the seconds per
picture (median), so the cost of the noise is visible next to its effect. The contact sheets
(OUT/<prompt>-v<variance>/explore/contact.png) are there to look at: the number measures spread,
not whether the pictures still follow the prompt.

On the tiny-random model it runs (a smoke test) but means nothing: random weights draw noise
whatever the embedding.
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPTS = [
    "a red fox in snow, photograph",
    "a portrait of an old fisherman, oil painting",
    "a cozy reading corner with a window, interior design photo",
]


def diversity(paths: list[Path]) -> float:
    import numpy as np
    from PIL import Image

    thumbs = []
    for path in paths:
        with Image.open(path) as image:
            grey = np.asarray(image.convert("L").resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float64)
        thumbs.append((grey - grey.mean()) / (grey.std() + 1e-9))
    pairs = [1.0 - float((a * b).mean()) for a, b in itertools.combinations(thumbs, 2)]
    return statistics.fmean(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("PIPELINE_MODEL", "Tongyi-MAI/Z-Image-Turbo"))
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--variances", default="0,0.1,0.3,0.5")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--out", default="/tmp/variance-bench")
    args = parser.parse_args()

    from pipeline import Pipeline

    variances = [float(v) for v in args.variances.split(",")]
    rows = []
    with Pipeline(model=args.model, out=args.out) as p:
        for n, prompt in enumerate(PROMPTS):
            base = None
            for variance in variances:  # interleaved per prompt: machine noise hits every variance alike
                result = p.explore(prompt, seeds=list(range(args.seeds)), size=(args.size, args.size),
                                   variance=variance, run=f"p{n}-v{variance:g}")
                spread = diversity(result.paths)
                base = spread if variance == 0 else base
                seconds = statistics.median(item.seconds for item in result.items)
                rows.append((n, variance, spread, spread / base if base else float("nan"), seconds))
    print(f"model {args.model}, {args.seeds} seeds at {args.size}², diversity = mean pairwise 1 − corr")
    print("| prompt | variance | diversity | × variance 0 | s / picture |")
    print("|---|---|---|---|---|")
    for n, variance, spread, ratio, seconds in rows:
        print(f"| {n} | {variance:g} | {spread:.3f} | {ratio:.2f} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
