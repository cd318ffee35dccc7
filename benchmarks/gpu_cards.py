"""Simulated card sizes on one big GPU: what ``auto`` picks, speed, memory, host RAM, and a projection
for two 12 GB consumer cards. Run through ``benchmarks/gpu_profiles.py --cards`` (< 8 min on an H200).

1. The full-size random-weight Z-Image-Turbo transformer (6.15 B, bf16) and the Flux VAE are saved once
   in the Hugging Face layout (bf16 safetensors shards), then loaded the way users load them:
   ``load_pipeline_without_text_encoder`` (diffusers for bf16; tensor-by-tensor int8 for 8-bit).
2. For each weights kind (bf16, int8), in one process, the card sizes from the largest down (the whole
   card, 24, 16, 12, 8 GiB): ``torch.cuda.set_per_process_memory_fraction`` caps the memory and the
   engine is told the card has that size, with 0.5 GiB taken (a desktop's display and CUDA context).
   ``auto`` picks the profile; 512² batch 1 and 4 and 1024² batch 1 are timed (median of ``--repeats``
   after a warm-up), with the peak device memory and the process's RSS while rendering.
3. Baselines, same run, at the 12 GiB cap: plain diffusers ``enable_model_cpu_offload`` and
   ``enable_sequential_cpu_offload`` (512² batch 1).
4. ``--compile`` on the whole card (bf16): first-picture cost and the compiled speed.
5. Cold start: a fresh process from start to its first 512² picture, against reading the weight files
   (evicted from the page cache first with ``posix_fadvise``).

Host→device GiB per picture are computed from the profile (what it moves per step or call), not
counted. The consumer-card rows are a PROJECTION: compute time scaled by the ratio of dense bf16
tensor throughput (datasheet figures below), transfers at 25 GB/s, overlapped where the profile
overlaps them (``low``: prefetch on a CUDA stream), added where it does not.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

GiB = 1024**3
CAPS = ("whole", 24, 16, 12, 8)
CELLS = ((512, 1), (512, 4), (1024, 1))
DESKTOP_TAKEN = 0.5 * GiB
PCIE_BYTES_PER_S = 25e9
# Dense BF16 tensor TFLOPS (FP32 accumulate): H200 SXM (= H100 SXM, NVIDIA datasheet); RTX 3060 and
# RTX 4070 from NVIDIA's Ampere GA10x and Ada whitepapers (GeForce: half rate with FP32 accumulate).
TFLOPS = {"H200": 989.0, "RTX 3060 12 GB": 25.6, "RTX 4070 12 GB": 58.3}
MEM_BANDWIDTH = {"RTX 3060 12 GB": 360e9, "RTX 4070 12 GB": 504e9}  # bytes/s: int8 dequantization traffic


class RssSampler:
    """The process's peak RSS while a block runs (sampled every ``interval`` seconds)."""

    def __init__(self, interval: float = 0.02):
        self.peak = 0
        self.interval = interval
        self._stop = threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def save_model(folder: Path, builder) -> int:
    """The transformer and VAE in the Hugging Face layout; returns the bytes written."""
    import torch
    from diffusers import ZImagePipeline

    transformer, vae = builder.transformer().to("cpu"), builder.vae().to("cpu")
    pipe = ZImagePipeline(transformer=transformer, vae=vae, scheduler=builder.scheduler(), text_encoder=None,
                          tokenizer=None)
    pipe.save_pretrained(folder, max_shard_size="5GB")
    del pipe, transformer, vae
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return sum(p.stat().st_size for p in folder.rglob("*.safetensors"))


def drop_page_cache(folder: Path) -> None:
    for path in folder.rglob("*.safetensors"):
        with open(path, "rb") as f:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def disk_read_seconds(folder: Path) -> float:
    drop_page_cache(folder)
    started = time.perf_counter()
    for path in folder.rglob("*.safetensors"):
        with open(path, "rb", buffering=0) as f:
            while f.read(64 * 1024 * 1024):
                pass
    return time.perf_counter() - started


def h2d_gib_per_picture(profile: str, transformer_bytes: int, vae_bytes: int, steps: int, batch: int) -> float:
    """Host→device bytes a profile moves per picture (computed from what it streams)."""
    if profile in ("full", "cpu"):
        return 0.0
    if profile == "balanced":  # the whole transformer once per call, the VAE once
        return (transformer_bytes + vae_bytes) / batch / GiB
    return transformer_bytes * steps / batch / GiB  # low, minimal, sequential: every block every step


def project(row, resident_seconds, transformer_bytes, steps, weights):
    """Seconds per image on each consumer card (a projection, see the module's docstring)."""
    out = {}
    for card, tflops in TFLOPS.items():
        if card == "H200":
            continue
        compute = resident_seconds * TFLOPS["H200"] / tflops
        if weights == "int8":  # int8 read + bf16 write + bf16 read per weight per step, per batch
            compute += 5 * transformer_bytes * steps / MEM_BANDWIDTH[card] / row["batch"]
        transfer = row["h2d_gib"] * GiB / PCIE_BYTES_PER_S
        overlapped = row["profile"] == "low"
        out[card] = max(compute, transfer) if overlapped else compute + transfer
    return out


def measure_cells(engine, cells, steps, repeats, jobs_for, timed, device):
    import torch

    rows = []
    for size, batch in cells:
        jobs = jobs_for(size, batch, steps)
        torch.cuda.reset_peak_memory_stats() if device.startswith("cuda") else None
        try:
            with RssSampler() as rss:
                seconds, _ = timed(device, lambda jobs=jobs: engine.txt2img(jobs), repeats)
            peak = torch.cuda.max_memory_allocated() / GiB if device.startswith("cuda") else None
            rows.append(dict(size=size, batch=batch, profile=engine._placed or engine.profile,
                             sec_per_image=seconds / batch, peak_gib=peak, rss_gib=rss.peak / GiB))
        except Exception as err:  # noqa: BLE001 - an out-of-memory is a result here
            rows.append(dict(size=size, batch=batch, profile=engine._placed or engine.memory, error=str(err)[:120]))
    return rows


# ---------------------------------------------------------------- one process per weights kind


def cap_memory(cap, total):
    """Cap this process's device memory and make the engine see a card of that size."""
    import torch

    from pipeline.engines import memory as mem

    size = total if cap == "whole" else min(total, int(cap * GiB))
    torch.cuda.empty_cache()  # what the previous (larger) cap cached is not this card's
    torch.cuda.set_per_process_memory_fraction(size / total)
    taken = 0 if cap == "whole" else DESKTOP_TAKEN

    def device_memory(device):
        return size - taken - torch.cuda.memory_reserved(), size

    mem.device_memory = device_memory
    return size


def run_weights(folder: Path, weights: str, args, smoke: bool) -> list[dict]:
    """Load from disk as users do, then every card size from the largest down, ``auto`` each time."""
    import torch

    from benchmarks.gpu_build import Builder, jobs_for, timed, tiny_configs, FULL_TEXT_ENCODER, FULL_VAE, \
        FULL_TRANSFORMER
    from pipeline.engines import memory as mem
    from pipeline.engines.zimage import ZImageEngine, load_pipeline_without_text_encoder

    device = "cpu" if smoke else "cuda"
    dtype = torch.float32 if smoke else torch.bfloat16
    builder = Builder(device, dtype, tiny_configs() if smoke else (FULL_TRANSFORMER, FULL_TEXT_ENCODER, FULL_VAE))
    started = time.perf_counter()
    with RssSampler() as load_rss:
        pipe = load_pipeline_without_text_encoder(str(folder), dtype, device=device,
                                                  weights_dtype=None if weights == "bf16" else weights)
    load_seconds = time.perf_counter() - started
    options = mem.EngineOptions(weights_dtype=None if weights == "bf16" else weights, compile=args.compile)
    rows = []
    total = None if smoke else torch.cuda.mem_get_info()[1]
    steps, repeats = args.steps, args.repeats
    cells = [(64, 1), (64, 2)] if smoke else CELLS
    caps = ["whole"] if args.compile else ["whole", 12] if smoke else list(CAPS)
    engine = None
    for cap in caps:
        if smoke:  # the CPU has no caps: each profile the chooser would pick, applied on the CPU
            sizes = mem.ZIMAGE_TURBO.with_weights(weights)
            card = 141 if cap == "whole" else cap
            picks = {mem.choose_profile(int((card - 0.5) * GiB), card * GiB, 512, 512, 1, sizes)}
            engine = ZImageEngine.from_pipeline(pipe, device="cpu", dtype="fp32", memory=picks.pop(),
                                                text_encoder_loader=lambda: (builder.tokenizer(), builder.text_encoder()),
                                                fingerprint="bench", options=options, profiles_on_cpu=True)
        elif engine is None:
            engine = ZImageEngine.from_pipeline(pipe, device=device, dtype="bf16", memory="auto", options=options,
                                                text_encoder_loader=lambda: (builder.tokenizer(),
                                                                             builder.text_encoder().to("cpu")),
                                                fingerprint="bench")
        if not smoke:
            cap_memory(cap, total)
        engine.encode([jobs_for(64, 1, 1)[0].prompt])
        first = None
        if args.compile:
            jobs = jobs_for(cells[0][0], cells[0][1], steps)
            begun = time.perf_counter()
            engine.txt2img(jobs)
            first = time.perf_counter() - begun
        for row in measure_cells(engine, cells, steps, repeats, jobs_for, timed, device):
            row.update(weights=weights, cap=cap, compile=args.compile, load_seconds=load_seconds,
                       load_rss_gib=load_rss.peak / GiB, first_picture_seconds=first,
                       transformer_bytes=mem.module_bytes(pipe.transformer), vae_bytes=mem.module_bytes(pipe.vae))
            if "error" not in row:
                row["h2d_gib"] = h2d_gib_per_picture(row["profile"], row["transformer_bytes"], row["vae_bytes"],
                                                     steps, row["batch"])
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


def run_baselines(folder: Path, args, smoke: bool) -> list[dict]:
    """Plain diffusers offloading at the 12 GiB cap (512² batch 1), the same random weights."""
    import torch
    from diffusers import ZImagePipeline

    from benchmarks.gpu_build import Builder, PROMPT, timed, tiny_configs, FULL_TEXT_ENCODER, FULL_VAE, \
        FULL_TRANSFORMER

    device = "cpu" if smoke else "cuda"
    dtype = torch.float32 if smoke else torch.bfloat16
    builder = Builder("cpu", dtype, tiny_configs() if smoke else (FULL_TRANSFORMER, FULL_TEXT_ENCODER, FULL_VAE))
    rows = []
    size = 64 if smoke else 512
    for name in ("enable_model_cpu_offload", "enable_sequential_cpu_offload"):
        pipe = ZImagePipeline.from_pretrained(str(folder), torch_dtype=dtype, text_encoder=builder.text_encoder(),
                                              tokenizer=builder.tokenizer())
        pipe.set_progress_bar_config(disable=True)
        if not smoke:
            total = torch.cuda.mem_get_info()[1]
            torch.cuda.set_per_process_memory_fraction(12 * GiB / total)
            getattr(pipe, name)()
        row = dict(weights="bf16", cap=12, size=size, batch=1, profile=f"diffusers {name[7:]}", compile=False)

        def call(pipe=pipe):
            with torch.inference_mode():
                pipe(prompt=[PROMPT], width=size, height=size, num_inference_steps=args.steps, guidance_scale=0.0,
                     generator=torch.Generator("cpu").manual_seed(0), output_type="pil")
        try:
            with RssSampler() as rss:
                seconds, peak = timed(device, call, args.repeats)
            tb = sum(p.numel() * p.element_size() for p in pipe.transformer.parameters())
            vb = sum(p.numel() * p.element_size() for p in pipe.vae.parameters())
            row.update(sec_per_image=seconds, peak_gib=peak, rss_gib=rss.peak / GiB, transformer_bytes=tb,
                       vae_bytes=vb, h2d_gib=h2d_gib_per_picture("balanced" if "model" in name else "low", tb, vb,
                                                                 args.steps, 1))
        except Exception as err:  # noqa: BLE001 - out of memory is a result
            row["error"] = str(err).splitlines()[0][:120]
        rows.append(row)
        print(format_row(row), flush=True)
        del pipe
        if not smoke:
            torch.cuda.empty_cache()
    return rows


def format_row(row) -> str:
    head = f"{row['weights']:<5} {str(row['cap']):>5} {row['size']:>5}² b{row['batch']:<2} {row['profile']:<34}"
    if "error" in row:
        return head + f" ERROR {row['error']}"
    gib = "-" if row.get("peak_gib") is None else f"{row['peak_gib']:.2f}"
    return (head + f" {row['sec_per_image']:>8.3f} {1 / row['sec_per_image']:>6.2f} {gib:>7} {row['rss_gib']:>7.2f}"
            f" {row.get('h2d_gib', 0):>8.1f}")


def child_main(argv):
    """``gpu_cards.py --child KIND FOLDER [--smoke] [--steps N] [--repeats N] [--compile]``: JSON rows."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("kind")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--weights", default="bf16")
    args = parser.parse_args(argv)
    if args.kind == "baselines":
        rows = run_baselines(args.folder, args, args.smoke)
    elif args.kind == "cold":
        rows = [cold_start(args.folder, args, args.smoke)]
    else:
        rows = run_weights(args.folder, args.kind, args, args.smoke)
    args.json.write_text(json.dumps(rows, indent=1))


def cold_start(folder: Path, args, smoke: bool) -> dict:
    """Seconds from process start (stamped by the parent in PIPELINE_BENCH_T0) to the first 512² picture:
    imports, loading from disk (page cache evicted), placement, render. The prompt's embedding is
    given, as the store gives it for any prompt seen before."""
    t0 = float(os.environ["PIPELINE_BENCH_T0"])
    import torch

    from benchmarks.gpu_build import PROMPT, jobs_for
    from pipeline.engines import memory as mem
    from pipeline.engines.zimage import ZImageEngine, load_pipeline_without_text_encoder

    device, dtype = ("cpu", torch.float32) if smoke else ("cuda", torch.bfloat16)
    weights = None if args.weights == "bf16" else args.weights
    pipe = load_pipeline_without_text_encoder(str(folder), dtype, weights_dtype=weights, device=device)
    engine = ZImageEngine.from_pipeline(pipe, device=device, dtype="fp32" if smoke else "bf16", memory="auto",
                                        text_encoder_loader=lambda: None, fingerprint="bench",
                                        options=mem.EngineOptions(weights_dtype=weights))
    width = pipe.transformer.config.cap_feat_dim
    engine.embeddings.memory[PROMPT] = torch.randn(32, width, generator=torch.Generator().manual_seed(0)).to(dtype)
    engine.txt2img(jobs_for(64 if smoke else 512, 1, args.steps))
    if device == "cuda":
        torch.cuda.synchronize()
    return dict(kind="cold", weights=args.weights, profile=engine._placed, seconds=time.time() - t0)


# ---------------------------------------------------------------- the orchestrating process


def part(kind: str, folder: Path, out: Path, args, extra=()) -> list[str]:
    """The child's arguments for one part of the benchmark (after ``--child``)."""
    argv = [kind, str(folder), "--json", str(out), "--steps", str(args.steps), "--repeats", str(args.repeats), *extra]
    return argv + (["--smoke"] if args.cpu_smoke else [])


def spawn(parts: list[list[str]]) -> list[dict]:
    """Run the parts in a fresh process, one process per part (each part's peak memory and RSS are its
    own; cold start starts from nothing). With --cpu-smoke, all parts in one process: the smoke checks
    that the code of every part runs, and 5 processes importing torch+diffusers cost ~40 CPU s."""
    root = Path(__file__).resolve().parents[1]
    rows = []
    for group in [parts] if parts and "--smoke" in parts[0] else [[p] for p in parts]:
        env = dict(os.environ, PYTHONPATH=str(root), PIPELINE_BENCH_T0=repr(time.time()))
        command = [sys.executable, str(Path(__file__).resolve()),
                   *(["--child", *group[0]] if len(group) == 1 else ["--children", json.dumps(group)])]
        proc = subprocess.run(command, env=env, text=True, capture_output=True, check=False)
        sys.stdout.write(proc.stdout)
        if proc.returncode != 0:
            last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode
            print(f"  {'+'.join(p[0] for p in group)} failed: {last}")
            continue
        rows += [row for p in group for row in json.loads(Path(p[p.index("--json") + 1]).read_text())]
    return rows


def children_main(parts: list[list[str]]) -> None:
    """``gpu_cards.py --children JSON``: the parts one after another in this process (--cpu-smoke). A cold
    start here is timed from the part's start, imports excluded (they were paid once, before)."""
    for argv in parts:
        if argv[0] == "cold":
            drop_page_cache(Path(argv[1]))
            os.environ["PIPELINE_BENCH_T0"] = repr(time.time())
        child_main(argv)


def main(args) -> list[dict]:
    """Everything above, in order; prints the table, the projection and the goals."""
    import tempfile

    import torch

    from benchmarks.gpu_build import Builder, FULL_TEXT_ENCODER, FULL_TRANSFORMER, FULL_VAE, tiny_configs

    smoke = args.cpu_smoke
    started = time.perf_counter()
    if not smoke:
        print(f"device: {torch.cuda.get_device_name()} ({torch.cuda.mem_get_info()[1] / GiB:.0f} GiB), "
              f"torch {torch.__version__}")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="zimage-cards-"))
    folder = work / "model"
    if not (folder / "model_index.json").exists():
        builder = Builder("cpu" if smoke else "cuda", torch.float32 if smoke else torch.bfloat16,
                          tiny_configs() if smoke else (FULL_TRANSFORMER, FULL_TEXT_ENCODER, FULL_VAE))
        begun = time.perf_counter()
        written = save_model(folder, builder)
        print(f"saved the random-weight model ({written / GiB:.1f} GiB of safetensors) in "
              f"{time.perf_counter() - begun:.0f} s to {folder}")
    disk = disk_read_seconds(folder)
    print(f"reading the weight files from disk (page cache evicted): {disk:.1f} s\n")
    print(f"{'wts':<5} {'cap':>5} {'size':>6} {'bt':<3} {'profile (auto)':<34} {'s/img':>8} {'img/s':>6} "
          f"{'peakGiB':>7} {'RSS GiB':>7} {'H2D GiB':>8}")
    parts = [part(weights, folder, work / f"{weights}.json", args) for weights in ("bf16", "int8")]
    parts.append(part("baselines", folder, work / "baselines.json", args))
    if smoke:  # all parts in one process (spawn); the cold starts after the rest
        parts += [part("cold", folder, work / f"cold-{w}.json", args, ("--weights", w)) for w in ("bf16", "int8")]
        every = spawn(parts)
        rows, cold = [r for r in every if r.get("kind") != "cold"], [r for r in every if r.get("kind") == "cold"]
    else:
        rows = spawn(parts)
        if not args.no_compile:  # (not with --cpu-smoke: inductor's C++ build would take minutes on a small CPU)
            print("--compile (regional, bf16, whole card); the first picture includes compiling")
            rows += spawn([part("bf16", folder, work / "compile.json", args, ("--compile",))])
        cold = []
        for weights in ("bf16", "int8"):
            drop_page_cache(folder)
            cold += spawn([part("cold", folder, work / f"cold-{weights}.json", args, ("--weights", weights))])
    for row in cold:
        print(f"cold start {row['weights']}: {row['seconds']:.1f} s to the first picture ({row['profile']}); "
              f"disk read {disk:.1f} s; ratio {row['seconds'] / disk:.2f} (goal ≤ 1.5)")
    projection(rows, args.steps)
    goals(rows)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(rows=rows, cold=cold, disk_seconds=disk), indent=1))
    return rows + cold


def find(rows, **match):
    return [r for r in rows if all(r.get(k) == v for k, v in match.items()) and "error" not in r]


def projection(rows, steps):
    print("\nPROJECTION for 12 GB consumer cards (not measured): compute scaled by dense bf16 TFLOPS "
          f"({', '.join(f'{k} {v:g}' for k, v in TFLOPS.items())}), transfers at 25 GB/s")
    for row in [r for r in rows if r.get("cap") == 12 and "error" not in r and not r.get("compile")]:
        resident = find(rows, weights=row["weights"], cap="whole", size=row["size"], batch=row["batch"],
                        compile=False) if not row["profile"].startswith("diffusers") else \
            find(rows, weights="bf16", cap="whole", size=row["size"], batch=row["batch"], compile=False)
        if not resident:
            continue
        cards = project(row, resident[0]["sec_per_image"], row["transformer_bytes"], steps, row["weights"])
        row["projection"] = cards
        print(f"  {row['weights']:<5} {row['size']}² b{row['batch']} {row['profile']:<34} " +
              "  ".join(f"{card}: {sec:.2f} s/img" for card, sec in cards.items()))


def goals(rows):
    print("\ngoals:")
    at12 = [r for r in rows if r.get("cap") == 12 and not r["profile"].startswith("diffusers")]
    print(f"  12 GiB cap, never out of memory: {'yes' if all('error' not in r for r in at12) else 'NO'}")
    for r in find(rows, cap=12, size=512, batch=4):
        if not r["profile"].startswith("diffusers"):
            print(f"  12 GiB cap {r['weights']} 512² b4: {1 / r['sec_per_image']:.2f} img/s (goal ≥ 2.5)")
    for size in (512, 1024):
        low = find(rows, weights="bf16", cap=12, size=size, batch=1)
        eight = find(rows, weights="int8", cap=12, size=size, batch=1)
        if low and eight and low[0].get("projection") and eight[0].get("projection"):
            for card in low[0]["projection"]:
                ratio = low[0]["projection"][card] / eight[0]["projection"][card]
                print(f"  projected {card} {size}² b1: int8 {ratio:.2f}× bf16-{low[0]['profile']} (goal ≥ 1.5)")
    for r in find(rows, weights="int8", cap=12):
        print(f"  12 GiB cap int8 {r['size']}² b{r['batch']}: host RSS {r['rss_gib']:.2f} GiB (goal ≤ 4)")
    for r in find(rows, cap=8, size=512, batch=1):
        print(f"  8 GiB cap {r['weights']} 512² b1: {1 / r['sec_per_image']:.2f} img/s (goal ≥ 1)")
    for r in find(rows, compile=True):
        print(f"  --compile whole card {r['size']}² b{r['batch']}: {r['sec_per_image']:.3f} s/img "
              f"(goals: 512² b4 ≤ 0.22, 1024² b1 ≤ 1.0); first picture {r['first_picture_seconds']:.1f} s")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("--child", "--children"):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        child_main(sys.argv[2:]) if sys.argv[1] == "--child" else children_main(json.loads(sys.argv[2]))
