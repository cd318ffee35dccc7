"""How far the upscale estimate is from the real time: fresh probes, and after one real upscale
corrected the cost model (what a second upscale on this machine sees). Prints a table of
estimate / real per upscaler and size, the probes' own time, and the load average.

    python benchmarks/upscale_estimate.py [--device cpu] [--sizes 128,256,384] [--upscalers realesr-animevideov3]
        [--short]   (the probes of --dry-run)
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    import numpy as np

    from pipeline.engines.upscaler import load_upscaler
    from pipeline.models.upscaler_weights import resolve_weights

    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--sizes", default="128,256,384")
    parser.add_argument("--upscalers", default="realesr-animevideov3")
    parser.add_argument("--short", action="store_true", help="the dry run's short probes instead of the engine's")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(1)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'upscaler':24} {'size':>5} {'probe s':>8} {'fresh est':>10} {'learned est':>12} {'real s':>8} "
          f"{'fresh/real':>10} {'learned/real':>12}")
    for name in args.upscalers.split(","):
        path = resolve_weights(name).path
        previous = None
        for side in sizes:
            engine = load_upscaler(path, device=args.device, precision=args.precision)
            started = time.perf_counter()
            if args.short:
                from pipeline.stages.upscale_time import short_probe

                short_probe(engine)
            fresh = engine.estimate_seconds([(side, side)])  # runs the probes (or uses the short ones')
            probe = time.perf_counter() - started
            learned = None
            if previous is not None:  # the cost model after the previous size's real upscale
                engine.use_cost_model(previous)
                learned = engine.estimate_seconds([(side, side)])
            image = [rng.random((side, side, 3), dtype=np.float32)]
            started = time.perf_counter()
            engine.upscale_arrays(image)
            real = time.perf_counter() - started
            engine.learn([(side, side)], None, None, real)
            previous = engine.known_cost
            text = "-" if learned is None else f"{learned:.2f}"
            ratio = "-" if learned is None else f"{learned / real:.2f}"
            print(f"{name:24} {side:5} {probe:8.2f} {fresh:10.2f} {text:>12} {real:8.2f} {fresh / real:10.2f} "
                  f"{ratio:>12}", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
