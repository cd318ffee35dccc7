"""The Ray pool against the in-process run: jobs per second, the overhead per job, time to the first picture.

    .venv/bin/python benchmarks/scale_ray.py                      # CPU: tiny model, in-process, Ray 1 and 2 workers
    .venv/bin/python benchmarks/scale_ray.py --gpu                # every GPU here: in-process on one, Ray on 1..N
    .venv/bin/python benchmarks/scale_ray.py --gpu --model reduced --size 512 --jobs 48

Each row explores ``--jobs`` seeds into an empty store (every job a miss), through the Python API as the CLI
does. ``first`` is the time from the call to the first picture stored (Ray rows: starting Ray and the
workers, each loading the model, are inside it); ``jobs/s`` is the steady rate after the first picture
((jobs - 1) / (last - first)); ``ms/job over in-process`` is 1000 × (1/rate − 1/in-process rate) for one
worker. On GPUs the goal is N workers ≥ 0.9 × N × one worker. ``pool ms/job``: 200 one-job shards through the
same pool with a stand-in engine that renders nothing (the pool's own cost per job: Ray calls, pickling, the
dispatcher), after the explore.

On a CPU every row uses one torch thread per process (the in-process run, and each worker: Ray is given
one CPU per worker): on a machine shared with other work, two OpenMP threads per process on two cores
slowed the in-process run 16× here (0.18 against 2.9 jobs/s at load average 13), which would flatter Ray.

``--model reduced`` (GPU): a random-weight Z-Image with the real transformer width and ``--layers`` of its 30
layers and the real VAE, saved once as a diffusers folder (no download; the pictures are noise, the cost
per step is the real width's).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PIPELINE_OFFLINE", "1")

PROMPT = "a red fox in fresh snow, morning light"


def explore_once(model: str, out: Path, jobs: int, size: int, steps: int, ray: str | None, device: str | None):
    from pipeline.api import Pipeline

    stamps = []
    started = time.perf_counter()
    with Pipeline(model=model, out=out, ray=ray, device=device) as p:
        result = p.explore(PROMPT, seeds=range(1, jobs + 1), size=(size, size), steps=steps, run="bench",
                           on_picture=lambda item: stamps.append(time.perf_counter()))
    assert result.computed == jobs, result.computed
    first = stamps[0] - started
    rate = (jobs - 1) / (stamps[-1] - stamps[0]) if jobs > 1 else float("nan")
    return first, rate, stamps[-1] - started


class StandIn:
    """An engine that renders nothing: what is left of a job's time on the pool is the pool's own cost."""

    key = "stand-in"

    def __call__(self):
        return None


def nothing(engine, jobs, batch):
    return [(b"", {}) for _ in jobs]


def ray_row(model, root, jobs, size, steps, workers: int, cpus: int | None, gpus: int | None):
    import ray

    from pipeline.scale import ray_pool

    ray.init(num_cpus=cpus, num_gpus=gpus, include_dashboard=False, configure_logging=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this script
    os.environ[ray_pool.WORKERS_ENV] = str(workers)
    try:
        row = explore_once(model, root / f"ray{workers}", jobs, size, steps, "local", None)
        pool, count = ray_pool.pool_for(ray_pool.LOCAL), 200
        list(pool.submit(list(range(workers)), engine=StandIn(), render=nothing))  # load the stand-in
        started = time.perf_counter()
        list(pool.submit(list(range(count)), engine=StandIn(), render=nothing, shard_size=1))
        return (*row, 1000 * (time.perf_counter() - started) / count)
    finally:
        ray_pool.forget_pools()
        ray.shutdown()


def build_reduced(folder: Path, layers: int) -> str:
    """A diffusers folder of a random Z-Image at the real width (``layers`` transformer layers), built once."""
    if (folder / "model_index.json").is_file():
        return str(folder)
    import torch
    from diffusers import ZImagePipeline

    from gpu_build import FULL_TEXT_ENCODER, FULL_TRANSFORMER, FULL_VAE, Builder

    text = dict(FULL_TEXT_ENCODER, num_hidden_layers=2)
    builder = Builder("cpu", torch.bfloat16, (dict(FULL_TRANSFORMER, n_layers=layers), text, FULL_VAE))
    pipe = ZImagePipeline(transformer=builder.transformer(), text_encoder=builder.text_encoder(), vae=builder.vae(),
                          tokenizer=builder.tokenizer(), scheduler=builder.scheduler())
    pipe.save_pretrained(folder)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="rows on this machine's GPUs")
    parser.add_argument("--model", default="tiny-random", help="tiny-random, reduced (GPU) or a model")
    parser.add_argument("--layers", type=int, default=8, help="--model reduced: transformer layers of 30")
    parser.add_argument("--jobs", type=int, default=None, help="seeds per row [CPU 12, GPU 48]")
    parser.add_argument("--size", type=int, default=None, help="[CPU 128, GPU 512]")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--workdir", default=None, help="where the reduced model and stores go [a temp folder]")
    args = parser.parse_args()
    jobs = args.jobs or (48 if args.gpu else 12)
    size = args.size or (512 if args.gpu else 128)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="scale-ray-"))
    model = build_reduced(root / "reduced-model", args.layers) if args.model == "reduced" else args.model

    load = os.getloadavg()[0]
    rows = []
    if args.gpu:
        import torch

        n = torch.cuda.device_count()
        print(f"{n} × {torch.cuda.get_device_name(0)}; model {args.model}; {jobs} jobs at {size}², {args.steps} steps",
              flush=True)
        rows.append(("in-process, 1 GPU", 0, *explore_once(model, root / "here", jobs, size, args.steps, None,
                                                            "cuda"), None))
        for workers in range(1, n + 1):
            rows.append((f"Ray, {workers} GPU worker{'s' * (workers > 1)}", workers,
                         *ray_row(model, root, jobs, size, args.steps, workers, None, workers)))
    else:
        import torch

        torch.set_num_threads(1)  # every row one torch thread per process: see the docstring
        print(f"CPU ({os.cpu_count()} cores, load average {load:.1f} at start); model {args.model}; {jobs} jobs at "
              f"{size}², {args.steps} steps; one torch thread per process", flush=True)
        rows.append(("in-process", 0, *explore_once(model, root / "here", jobs, size, args.steps, None, "cpu"), None))
        for workers in (1, 2):
            rows.append((f"Ray, {workers} CPU worker{'s' * (workers > 1)}", workers,
                         *ray_row(model, root, jobs, size, args.steps, workers, workers, 0)))
    base = rows[0][3]
    print(f"\n{'':24} {'first picture':>14} {'jobs/s':>8} {'× in-process':>13} {'ms/job over':>12} {'wall':>8} "
          f"{'pool ms/job':>12}")
    for name, workers, first, rate, wall, pool_ms in rows:
        over = f"{1000 * (1 / rate - 1 / base):+.0f}" if workers == 1 else ""
        pool = f"{pool_ms:.1f}" if pool_ms is not None else ""
        print(f"{name:24} {first:13.1f}s {rate:8.2f} {rate / base:12.2f}× {over:>12} {wall:7.1f}s {pool:>12}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
