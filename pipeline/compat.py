"""A drop-in for scripts written against the Z-Image-Turbo WebUI's generator.

    from pipeline.compat import get_generator
    paths, seconds, metadata = get_generator().generate(prompt="a red fox in snow", width=512, height=512)

Pictures are saved into ``./outputs/`` as ``outputs_YYYYMMDDHHMMSS.png`` (``_1``, ``_2``… when
several land in one second), and come from the same store as every other command: a
repeated prompt and seed is a copy, not a render. The model loads once per generator.
"""
from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path

from .core.errors import UserError
from .core.seeds import MAX_SEED

_GENERATORS: dict = {}


def get_generator(model: str | None = None, *, output_dir: str | Path = "outputs", device: str | None = None,
                  dtype: str = "auto", memory: str = "auto") -> "Generator":
    """The generator for ``model`` (argument, else ``$PIPELINE_MODEL``, else Z-Image-Turbo), made once and reused."""
    from .models.names import check_model, default_model

    model = check_model(model or default_model())
    key = (model, str(output_dir), device, dtype, memory)
    if key not in _GENERATORS:
        _GENERATORS[key] = Generator(model, output_dir=output_dir, device=device, dtype=dtype, memory=memory)
    return _GENERATORS[key]


class Generator:
    def __init__(self, model: str, *, output_dir: str | Path = "outputs", device: str | None = None,
                 dtype: str = "auto", memory: str = "auto"):
        from .session import Session

        self.output_dir = Path(output_dir)
        self.session = Session(model=model, out=self.output_dir, device=device, dtype=dtype, memory=memory)

    @property
    def model(self) -> str:
        return self.session.model

    def generate(self, prompt: str, negative_prompt: str = "", width: int = 1024, height: int = 1024,
                 num_inference_steps: int = 8, cfg_scale: float = 0.0, num_images: int = 1,
                 seed: int = -1) -> tuple[list[str], float, dict]:
        """Render ``num_images`` pictures (seeds ``seed``, ``seed+1``…; ``-1`` picks a random first seed).

        Returns ``(output_paths, gen_time, metadata)``: the saved files, the seconds this call took,
        and the parameters (with the seeds actually used).
        """
        from .stages.specs import ExploreSpec, build

        started = time.perf_counter()
        if not isinstance(num_images, int) or isinstance(num_images, bool) or not 1 <= num_images <= 64:
            raise UserError(f"num_images must be a whole number from 1 to 64, not {num_images!r}")
        if seed is None or int(seed) < 0:
            seed = secrets.randbelow(2**32)
        seed = int(seed)
        if seed + num_images - 1 > MAX_SEED:
            raise UserError(f"seed {seed} is too large: seeds go from 0 to {MAX_SEED}")
        seeds = list(range(seed, seed + num_images))
        spec = build(ExploreSpec, prompt=prompt, negative=negative_prompt or "", seeds=seeds,
                     size=(int(width), int(height)), steps=int(num_inference_steps), guidance=float(cfg_scale))
        stored, computed = self._render(spec)
        paths = [str(save_output(stored[s], self.output_dir)) for s in seeds]
        gen_time = time.perf_counter() - started
        metadata = {
            "prompt": prompt, "negative_prompt": negative_prompt or "", "width": spec.size[0],
            "height": spec.size[1], "num_inference_steps": spec.steps, "cfg_scale": spec.guidance,
            "num_images": num_images, "seed": seed, "seeds": seeds, "model": self.session.model,
            "keys": [self._keys[s] for s in seeds], "cached": [s not in computed for s in seeds],
            "gen_time": round(gen_time, 4),
        }
        return paths, gen_time, metadata

    def _render(self, spec) -> tuple[dict[int, Path], set[int]]:
        """{seed: stored file} for every seed of ``spec``, rendering the ones the store lacks."""
        import dataclasses

        from .stages.common import batches, store_picture
        from .stages.explore import plan, resolve_batch

        session = self.session
        jobs = plan(spec, session.fingerprint, session.dtype)
        files: dict[int, Path] = {}
        computed: set[int] = set()
        self._keys = {job.seed: job.key for job in jobs}
        misses = []
        for job in jobs:
            artifact = session.store.get(job.key)
            if artifact is None:
                misses.append(job)
            else:
                files[job.seed] = artifact.path
        if misses:
            engine = session.engine()
            if engine.fingerprint != misses[0].model:  # a hub model's revision is known once loaded
                misses = [dataclasses.replace(job, model=engine.fingerprint) for job in misses]
            for batch in batches(misses, resolve_batch(spec.batch, engine, spec.size)):
                with session.store.lock_all(job.key for job in batch):
                    started = time.perf_counter()
                    images = engine.txt2img(batch)
                    seconds = (time.perf_counter() - started) / len(batch)
                    for job, image in zip(batch, images):
                        artifact = store_picture(session.store, job, image, session.model, seconds=seconds,
                                                 engine=engine, stage="explore")
                        files[job.seed] = artifact.path
                        computed.add(job.seed)
                        self._keys[job.seed] = job.key
        return files, computed

    def close(self) -> None:
        self.session.close()


def _now() -> str:
    return time.strftime("%Y%m%d%H%M%S")


def save_output(src: Path, output_dir: Path) -> Path:
    """Place ``src`` at ``output_dir/outputs_<time>.png``, never over an existing file."""
    output_dir.mkdir(parents=True, exist_ok=True)
    stamp = _now()
    for n in range(100_000):
        dest = output_dir / (f"outputs_{stamp}.png" if n == 0 else f"outputs_{stamp}_{n}.png")
        try:
            os.link(src, dest)  # fails if dest exists: no file is ever overwritten
            return dest
        except FileExistsError:
            continue
        except OSError:
            try:
                with open(dest, "xb") as handle, open(src, "rb") as source:
                    shutil.copyfileobj(source, handle)
                return dest
            except FileExistsError:
                continue
    raise UserError(f"too many pictures named outputs_{stamp}*.png in {output_dir}")
