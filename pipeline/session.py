"""A session: the settings shared by all stages, the store, and the lazily loaded model."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from .models.names import check_model, default_model, loading_message, model_fingerprint
from .core.store import Store, default_store

log = logging.getLogger("pipeline")
status = logging.getLogger("pipeline.status")  # what a long wait is for; the CLI shows it on stderr


@dataclass
class Session:
    model: str = field(default_factory=default_model)
    out: Path = Path("outputs")
    store_path: Path | None = None
    device: str | None = None
    dtype: str = "auto"  # bf16 on GPUs and bf16-capable CPUs, else fp32
    memory: str = "auto"
    progress: bool = False  # tqdm bars on stderr (the CLI turns them on)
    engine_options: object = None  # engines.memory.EngineOptions: --transformer, --weights-dtype, --compile, --attention
    ray: str | None = None  # render on a Ray pool: "local" (start one here), "auto" or an address; None: here
    share: object = None  # how the stages' misses are shared between workers (scale.shares); None: as launched
    pool: object = None  # where this process's misses are rendered (stages.ray_render.PoolRender); None: here
    lora_paths: dict = field(default_factory=dict, init=False, repr=False)  # sha256 -> file of the LoRAs in use
    lora_missing: dict = field(default_factory=dict, init=False, repr=False)  # sha256 -> why its file is missing
    _engine: object = field(default=None, init=False, repr=False)
    _upscalers: dict = field(default_factory=dict, init=False, repr=False)  # (weights, device, precision) -> upscaler
    _fingerprint: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self.model = check_model(self.model)
        self.out = Path(self.out)
        from .core.hardware import check_device

        check_device(self.device)  # a wrong device is refused before anything loads
        if self.device in (None, "auto"):
            from .scale.distributed import default_device

            self.device = default_device() or self.device  # cuda:<local rank> under accelerate launch / torchrun
        if self.dtype in (None, "auto"):
            from .core.hardware import default_dtype

            self.dtype = default_dtype(self._ray_device() or self.device)
        if self.dtype not in ("bf16", "fp16", "fp32"):
            from .core.errors import UserError

            raise UserError(f"dtype {self.dtype!r} is not one of bf16, fp16, fp32")
        self.store: Store = Store(self.store_path) if self.store_path else default_store(self.out)
        if self.engine_options is None:
            from .engines.memory import EngineOptions

            self.engine_options = EngineOptions()
        if self.ray is not None and self.pool is None:  # the misses go to a Ray pool; this process records
            import functools

            from .scale.ray_pool import pool_for
            from .stages.ray_render import PoolRender

            self.pool = PoolRender(functools.partial(pool_for, self.ray))

    def _ray_device(self) -> str | None:
        """On a cluster (--ray auto or ADDRESS) the workers' device decides the default dtype: cuda when
        the cluster has GPUs. A local Ray has this machine's devices, so nothing changes then."""
        from .scale.ray_cluster import LOCAL

        if self.ray in (None, LOCAL) or self.device not in (None, "auto"):
            return None
        from .scale.ray_cluster import cluster_gpus, connect

        connect(self.ray)
        return "cuda" if cluster_gpus() else "cpu"

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.model) + self.engine_options.fingerprint_suffix()
        return self._fingerprint

    @property
    def engine_loaded(self) -> bool:
        return self._engine is not None

    def engine(self):
        """The Z-Image engine, loaded on first use (this is where torch is imported)."""
        if self._engine is None:
            message = loading_message(self.model)
            if message:
                status.info(message)
            from .engines.zimage import ZImageEngine

            self._engine = ZImageEngine(self.model, device=self.device, dtype=self.dtype, memory=self.memory,
                                        store=self.store, **self.engine_options.as_kwargs())
            self._engine.lora_paths = self.lora_paths
            if self._engine.fingerprint != self._fingerprint:
                # e.g. a hub model downloaded just now: its revision is known only after loading
                log.info("model fingerprint is now %s", self._engine.fingerprint)
                self._fingerprint = self._engine.fingerprint
        return self._engine

    def upscaler(self, key: tuple, load):
        """The super-resolution model for ``key``, loaded by ``load()`` on first use and kept for the session
        (an estimate and the upscale that follows share it); one upscaler in memory at a time."""
        if key not in self._upscalers:
            self._upscalers.clear()
            self._upscalers[key] = load()
        return self._upscalers[key]

    def release_upscaler(self) -> bool:
        """Free the upscaler (before the diffusion model loads: one model on a GPU at a time); True if one was held."""
        held = bool(self._upscalers)
        self._upscalers.clear()
        if held:
            import gc

            gc.collect()
        return held

    def resolve_loras(self, specs) -> list:
        """``--lora`` values as ``engines.lora.Lora`` (digests computed, weight 0 dropped); the engine
        finds their files through ``lora_paths``."""
        from .models.loras import resolve

        loras = resolve(specs, self.model)
        self.register_loras(loras)
        return loras

    def register_loras(self, loras, what: str = "the picture") -> None:
        """Make the LoRAs' files known to the engine; one whose file was not found (``path`` None) is
        remembered with the sentence ``require_lora_files`` says if a picture needs it computed."""
        from .models.loras import missing_message

        for lora in loras:
            if lora.path is not None:
                self.lora_paths[lora.sha256] = lora.path
            elif lora.sha256 not in self.lora_paths:
                self.lora_missing[lora.sha256] = missing_message(lora, self.model, what)

    def require_lora_files(self, jobs) -> None:
        """Before computing: every LoRA these jobs use has its file (else one sentence naming it)."""
        from .core.errors import UserError

        for job in jobs:
            for use in getattr(job, "loras", None) or ():
                if use.sha256 not in self.lora_paths:
                    raise UserError(self.lora_missing.get(use.sha256, f"LoRA {use.sha256[:12]}… has no file"))

    def close(self) -> None:
        """Release the model (and its memory)."""
        self._upscalers.clear()  # the upscale stage's loaded upscaler
        if self._engine is not None:
            self._engine = None
            try:
                import gc

                gc.collect()
                if "torch" in __import__("sys").modules:
                    import torch

                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
            except Exception:  # noqa: BLE001 - best effort release
                pass

