"""The Python API. The CLI is a thin layer over it; it returns typed results and never prints."""
from __future__ import annotations

from pathlib import Path

from .session import Session
from .specs import ExploreSpec, build
from .stages.common import StageResult


class Pipeline:
    """Explore → refine → upscale over one store, with the model loaded once and reused.

        with Pipeline(model="tiny-random", out="outputs") as p:
            run = p.explore("a red fox in snow", seeds=range(16))
    """

    def __init__(self, model: str | None = None, out: str | Path = "outputs", *, store: str | Path | None = None,
                 device: str | None = None, dtype: str = "auto", memory: str = "auto", progress: bool = False):
        kwargs = {"model": model} if model else {}
        self.session = Session(out=Path(out), store_path=Path(store) if store else None, device=device, dtype=dtype,
                               memory=memory, progress=progress, **kwargs)

    # -------------------------------------------------------------- stages

    def explore(self, prompt: str, *, seeds=None, count: int | None = None, seed: int | None = None,
                size=(512, 512), steps: int = 8, guidance: float = 0.0, negative: str = "", batch="auto",
                run: str | None = None, dry_run: bool = False) -> StageResult:
        """Render one candidate per seed (``seeds``, or ``count`` seeds from ``seed``) and lay them out in a run."""
        from .jobs import seeds_from_count
        from .stages.explore import explore

        if seeds is None:
            if count is None:
                raise_user("give seeds or count")
            seeds = seeds_from_count(count, random_base_seed() if seed is None else seed)
        elif count is not None:
            raise_user("give either seeds or count, not both")
        if isinstance(seeds, range):
            seeds = list(seeds)
        spec = build(ExploreSpec, prompt=prompt, negative=negative, seeds=seeds, size=size, steps=steps,
                     guidance=guidance, batch=batch)
        return explore(self.session, spec, run=run, dry_run=dry_run)

    # -------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Release the model and the memory it holds."""
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def random_base_seed() -> int:
    import secrets

    return secrets.randbelow(2**32)


def raise_user(message: str):
    from .errors import UserError

    raise UserError(message)
