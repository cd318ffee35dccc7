"""The Z-Image engine: loads the diffusers pipeline once and renders requests in batches.

One door: ``engine.render(request, task)`` (``request.RenderRequest``: prompts, size, steps, guidance, seeds,
variance, LoRAs, init images and strength, control, mask, noise). ``task`` names a registered task
(``tasks``: txt2img, img2img, detail; ControlNet and inpaint register theirs) whose diffusers pipeline is built
once from the loaded components. The engine owns every object it keeps (the task pipelines, the LoRA set);
nothing is set on it or on its pipelines from outside. ``txt2img(jobs)`` and ``img2img(jobs, images, strength)``
are shims over the door.

Heavy imports (torch, diffusers) happen here and only here, when a job misses the store.

Small-VRAM design:
- the pipeline is loaded on the CPU *without* its text encoder; prompts are encoded first
  (``embeddings.PromptEmbeddings``: from the store, or by loading the text encoder, which is
  released right after), so the text encoder and the transformer never share the device;
- the transformer and VAE are placed on the device at the first render, when the size and
  batch are known, by the memory profile (``memory.apply_profile``); ``auto`` picks it from
  the free device memory.
"""
from __future__ import annotations

import logging
import time

import torch

from ..core.errors import UserError
from ..core.jobs import RenderJob
from ..models.names import display_name, model_fingerprint
from . import memory as mem
from ..models import components as sources
from .embeddings import PromptEmbeddings
from . import tasks
from .request import RenderRequest

log = logging.getLogger("pipeline")

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
INT8_NOTE = ("--weights-dtype int8 stores the transformer's weights in int8 (one scale per output channel) and computes "
             "in {dtype}: about half the memory; pictures differ slightly from {dtype} ones")
COMPILE_BACKEND = "inductor"
FP8_CAVEAT = ("--weights-dtype fp8 stores the transformer's weights in float8 and computes in {dtype}: about half the "
              "memory, but pictures differ slightly from full-precision ones (finer detail and text may suffer)")
_said_once: set[str] = set()


def _say_once(level: int, message: str) -> None:
    if message not in _said_once:
        _said_once.add(message)
        log.log(level, message)


def pick_device(requested: str | None = None) -> str:
    """CUDA if present, else MPS, else CPU — or what the user asked for."""
    if requested and requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"device {requested!r} was asked for but CUDA is not available here")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def load_pipeline_without_text_encoder(model: str, dtype, transformer_path: str | None = None,
                                       vae_path: str | None = None, weights_dtype: str | None = None,
                                       device: str = "cpu"):
    """The ``ZImagePipeline`` with ``text_encoder=None, tokenizer=None``, on the CPU (see ``sources``).

    With ``weights_dtype="int8"`` a diffusers folder's transformer is read tensor by tensor and quantized
    as it arrives (``quantize.load_transformer_streaming``; on ``device`` when it is a GPU): the bf16
    transformer is never in RAM whole. Other sources are quantized after loading (``_prepare_transformer``).
    """
    module = None
    folder = sources.local_folder(model) if weights_dtype == "int8" and not transformer_path else None
    if folder is not None and (folder / "transformer").is_dir():
        from .quantize import load_transformer_streaming

        try:
            module = load_transformer_streaming(folder / "transformer", dtype, int8=True,
                                                work_device=device if device.startswith("cuda") else None)
        except (OSError, ValueError, KeyError) as err:
            raise UserError(f"cannot load model {model}: {str(err).splitlines()[0]}") from err
    return sources.pipeline_without_text_encoder(model, dtype, transformer=transformer_path, vae=vae_path,
                                                 transformer_module=module)


def load_text_encoder(model: str, dtype, text_encoder_path: str | None = None):
    """(tokenizer, text encoder) on the CPU; called only when a prompt's embedding is not stored."""
    return sources.text_encoder(model, dtype, text_encoder_file=text_encoder_path)


class ZImageEngine:
    """One loaded Z-Image pipeline (text-to-image plus an img2img view of the same weights)."""

    def __init__(self, model: str, device: str | None = None, dtype: str = "bf16", memory: str = "auto", *,
                 store=None, transformer: str | None = None, weights_dtype: str | None = None,
                 compile: bool = False, attention: str | None = None, text_encoder: str | None = None,
                 vae: str | None = None):
        if memory not in mem.MEMORY_CHOICES:
            raise UserError(f"memory profile {memory!r} is not one of {', '.join(mem.MEMORY_CHOICES)}")
        options = mem.EngineOptions(transformer=transformer, weights_dtype=weights_dtype, compile=compile,
                                    attention=attention, text_encoder=text_encoder, vae=vae)
        started = time.perf_counter()
        device = pick_device(device)
        pipe = load_pipeline_without_text_encoder(model, DTYPES[dtype], options.transformer, options.vae,
                                                  options.weights_dtype, device)
        self._setup(pipe, model=model, device=device, dtype=dtype, memory=memory, store=store,
                    options=options,
                    text_encoder_loader=lambda: load_text_encoder(model, DTYPES[dtype], options.text_encoder),
                    fingerprint=model_fingerprint(model))
        log.info("loaded %s (without its text encoder) on the CPU in %.1f s; it runs on %s (%s)",
                 display_name(model), time.perf_counter() - started, self.device, dtype)

    @classmethod
    def from_pipeline(cls, pipe, *, device: str, dtype: str, memory: str, text_encoder_loader, fingerprint: str,
                      store=None, options=None, profiles_on_cpu: bool = False) -> "ZImageEngine":
        """An engine around an already built ``ZImagePipeline`` (text_encoder=None), e.g. for benchmarks.

        ``text_encoder_loader()`` returns (tokenizer, encoder) on the CPU. ``profiles_on_cpu`` applies
        the offload profiles even on the CPU (a smoke test of the code path; no memory is saved).
        """
        engine = cls.__new__(cls)
        engine._setup(pipe, model=fingerprint, device=device, dtype=dtype, memory=memory, store=store,
                      options=options or mem.EngineOptions(), text_encoder_loader=text_encoder_loader,
                      fingerprint=fingerprint, profiles_on_cpu=profiles_on_cpu)
        return engine

    def _setup(self, pipe, *, model, device, dtype, memory, store, options, text_encoder_loader, fingerprint,
               profiles_on_cpu=False) -> None:
        self.options = options
        self.model = model
        self.device = device
        self.dtype_name = dtype
        self.dtype = DTYPES[dtype]
        self.memory = memory
        self._profiles_on_cpu = profiles_on_cpu and memory != "auto"
        self._text_encoder_loader = text_encoder_loader
        self.pipe = pipe
        self.pipe.set_progress_bar_config(disable=True)
        self._prepare_transformer()
        self.sizes = mem.sizes_of(self.pipe, weights=self.options.weights_dtype or dtype)
        self.fingerprint = fingerprint + self.options.fingerprint_suffix()
        text_encoder_file = mem.EngineOptions(text_encoder=self.options.text_encoder).fingerprint_suffix()
        self.text_encoder_id = f"{fingerprint}{text_encoder_file}|text_encoder|{dtype}"
        self.embeddings = PromptEmbeddings(self.text_encoder_id, store, self._load_text_encoder,
                                           self._place_text_encoder, self._release)
        self._placed: str | None = None
        self._placed_for: tuple | None = None
        self._task_pipes: dict = {}  # task name -> its pipeline over the loaded components
        self.profile = self._initial_profile()
        self.lora_paths: dict = {}  # sha256 -> LoRA file; the session shares its own dict here
        self._lora_set = None

    @property
    def loras(self):
        """The LoRAs on the transformer (``lora_weights.LoraSet``): switched per batch, never reloading it."""
        if self._lora_set is None:
            from .lora_weights import LoraSet

            self._lora_set = LoraSet(self.pipe.transformer, self.device, self.dtype, compiled=self.options.compile)
        return self._lora_set

    def check_loras(self, jobs) -> None:
        """Read and check every LoRA the jobs use, before the first picture (a foreign one fails here)."""
        for uses in {getattr(job, "loras", None) for job in jobs}:
            if uses:
                self.loras.check(uses, self.lora_paths)

    # ------------------------------------------------------------ set-up

    @property
    def accelerated(self) -> bool:
        """Memory profiles need a CUDA device (offload streams, memory queries)."""
        return self.device.startswith("cuda") or self._profiles_on_cpu

    def _initial_profile(self) -> str:
        if self._profiles_on_cpu:
            return self.memory
        if self.device == "cpu":
            level = logging.INFO if self.memory in ("auto", "full") else logging.WARNING
            _say_once(level, "memory profiles need a GPU; on the CPU everything runs in plain CPU memory")
            return "cpu"
        if not self.accelerated:
            if self.memory not in ("auto", "full"):
                _say_once(logging.WARNING, f"memory profile {self.memory!r} needs CUDA; on {self.device} "
                                           "everything stays on the device")
            return "full"
        return self.memory  # "auto" until the first render decides

    def _prepare_transformer(self) -> None:
        transformer = self.pipe.transformer
        if self.options.weights_dtype == "int8":
            from .quantize import is_quantized, quantize_int8_

            _say_once(logging.INFO, INT8_NOTE.format(dtype=self.dtype_name))
            if not is_quantized(transformer):  # the tiny model, a --transformer file, a ComfyUI folder
                quantize_int8_(transformer, self.dtype)
        if self.options.weights_dtype == "fp8":
            log.warning(FP8_CAVEAT.format(dtype=self.dtype_name))
            transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=self.dtype)
        if self.options.attention:
            from diffusers.models.attention_dispatch import AttentionBackendName

            names = [b.value for b in AttentionBackendName]
            if self.options.attention not in names:
                raise UserError(f"--attention {self.options.attention!r} is not one of "
                                f"{', '.join(n for n in names if not n.startswith('_'))}")
            try:
                transformer.set_attention_backend(self.options.attention)
            except (ImportError, RuntimeError, ValueError) as err:
                raise UserError(f"attention backend {self.options.attention!r} cannot be used here: "
                                f"{str(err).splitlines()[0]}") from err

    def _load_text_encoder(self):
        started = time.perf_counter()
        tokenizer, encoder = self._text_encoder_loader()
        log.info("loaded the text encoder in %.1f s (prompt embeddings not stored yet)", time.perf_counter() - started)
        return tokenizer, encoder

    def _place_text_encoder(self, encoder):
        """Put the text encoder where it can run now; returns the device to encode on."""
        if not self.accelerated:
            encoder.to(self.device)
            return torch.device(self.device)
        free, total = mem.device_memory(self.device)
        if self.memory == "minimal":
            mem.group_offload(encoder, self.device, leaf=True)
        elif self.memory != "low" and mem.text_encoder_fits(free, total, self.sizes):
            encoder.to(self.device)
        else:
            mem.group_offload(encoder, self.device, leaf=False)
        return torch.device(self.device)

    def _release(self) -> None:
        mem.release_device_memory(self.device)

    # ------------------------------------------------------------ placement

    def _choose(self, width: int, height: int, batch: int) -> str:
        if self.memory != "auto":
            return self.memory
        free, total = mem.device_memory(self.device)
        free += mem.allocated_bytes(self.device)  # what we hold now can be re-placed
        profile, why = mem.choose_profile_with_reason(free, total, width, height, batch, self.sizes)
        log.info("memory profile auto → %s for %dx%d, batch %d (%.1f GiB card): %s", profile, width, height, batch,
                 total / mem.GiB, why)
        return profile

    def _ensure_placed(self, width: int, height: int, batch: int) -> None:
        if self._placed_for == (width, height, batch):
            return
        if not self.accelerated:
            if self._placed is None:
                self.pipe.to(self.device)
                self._placed = self.profile
                self._maybe_compile()
            self._placed_for = (width, height, batch)
            return
        wanted = self._choose(width, height, batch)
        if self._placed is None:
            mem.apply_profile(self.pipe, wanted, self.device, width, height, batch)
            self._placed = wanted
            self._maybe_compile()
        elif mem.PROFILES.index(wanted) > mem.PROFILES.index(self._placed) and self._placed in ("full", "balanced"):
            log.info("switching memory profile %s → %s for %dx%d, batch %d", self._placed, wanted, width, height, batch)
            mem.unplace(self.pipe, self._placed)
            self._release()
            mem.apply_profile(self.pipe, wanted, self.device, width, height, batch)
            self._placed = wanted
        else:
            mem.configure_vae(self.pipe, self._placed, width, height, batch)
        self.profile = self._placed
        self._placed_for = (width, height, batch)

    def _maybe_compile(self) -> None:
        if not self.options.compile:
            return
        log.info("compiling the transformer's repeated blocks (the first render at each size and batch is slow)")
        import torch._dynamo

        config = torch._dynamo.config  # one graph per (size, batch): let a session use many before giving up
        name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
        setattr(config, name, max(getattr(config, name), 64))
        self.pipe.transformer.compile_repeated_blocks(fullgraph=False, dynamic=False, backend=COMPILE_BACKEND)

    # ------------------------------------------------------------ prompts

    def encode(self, prompts: list[str]) -> dict[str, object]:
        """Prompt embeddings (stored ones are reused; the text encoder is loaded only on a miss)."""
        try:
            return self.embeddings.get(list(prompts), self.device)
        except torch.OutOfMemoryError as err:
            self._release()
            raise UserError("the GPU ran out of memory while encoding prompts; try --memory minimal") from err

    def _embeddings(self, request):
        cfg = request.guidance > 0
        pictures = request.pictures
        texts = [p.prompt for p in pictures] + ([p.negative for p in pictures] if cfg else [])
        table = self.encode(texts)
        positive = [table[p.prompt] for p in pictures]
        negative = [table[p.negative] for p in pictures] if cfg else None
        return positive, negative

    @staticmethod
    def _generators(request):
        # Noise is drawn on the CPU so a seed means the same picture on any device.
        return [torch.Generator("cpu").manual_seed(p.seed) for p in request.pictures]

    # ------------------------------------------------------------ rendering

    def pipeline_for(self, task: str):
        """The diffusers pipeline of ``task`` (``engines.tasks``), built once from the loaded components."""
        spec = tasks.get(task)
        if spec.base:
            return spec.build(self.pipe)  # the base pipeline itself: nothing to build or keep
        pipe = self._task_pipes.get(task)
        if pipe is None:
            pipe = spec.build(self.pipe)
            if pipe is not self.pipe:
                pipe.set_progress_bar_config(disable=True)
            self._task_pipes[task] = pipe
        return pipe

    def render(self, request: RenderRequest, task: str = "txt2img") -> list:
        """The engine's one door: encode (phase 1), place (phase 2), denoise + decode with ``task``'s
        pipeline; PIL images, one per picture of the request. OOM becomes one sentence."""
        spec = tasks.get(task)
        tasks.check(spec, request)
        pipe = self.pipeline_for(task)
        kwargs = dict(spec.call_args(request))
        if request.loras or self._lora_set is not None:
            self.loras.activate(request.loras, self.lora_paths)  # one batch: one set of LoRAs
        positive, negative = self._embeddings(request)
        if any(p.variance is not None for p in request.pictures):  # --variance: noisy embeddings for the first steps
            from .variance import VarianceSchedule

            schedule = VarianceSchedule(request.pictures, positive, request.steps, request.strength)
            if schedule.needed:
                positive = schedule.embeddings()
                kwargs.update(callback_on_step_end=schedule.callback,
                              callback_on_step_end_tensor_inputs=["prompt_embeds"])
        try:
            self._ensure_placed(request.width, request.height, request.batch)
            with torch.inference_mode():
                result = pipe(
                    prompt_embeds=positive,
                    negative_prompt_embeds=negative,
                    width=request.width,
                    height=request.height,
                    num_inference_steps=request.steps,
                    guidance_scale=request.guidance,
                    generator=self._generators(request),
                    output_type="pil",
                    **kwargs,
                )
        except torch.OutOfMemoryError as err:
            profile = self._placed or self.profile
            del err
            self._release()
            raise UserError(f"the GPU ran out of memory rendering {request.width}x{request.height} with batch "
                            f"{request.batch} under the '{profile}' memory profile; "
                            f"{mem.lower_profile_hint(profile)}") from None
        finally:
            if not spec.base and self._placed == "balanced":  # the offload hooks belong to self.pipe: offload again
                self.pipe.maybe_free_model_hooks()
        return list(result.images)

    def txt2img(self, jobs: list[RenderJob]):
        """``render`` of a batch of compatible jobs from text (a shim over the one door)."""
        return self.render(RenderRequest.from_jobs(jobs), "txt2img")

    def img2img(self, jobs: list[RenderJob], images: list, strength: float):
        """``render`` of a batch of jobs image-to-image from ``images`` (a shim over the one door)."""
        return self.render(RenderRequest.from_jobs(jobs, init_images=images, strength=strength), "img2img")

    def peak_memory_bytes(self) -> int | None:
        if self.device.startswith("cuda"):
            return int(torch.cuda.max_memory_allocated(self.device))
        return None

    def reset_peak_memory(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(self.device)

    def auto_batch(self, width: int, height: int, limit: int = 8) -> int:
        """The largest batch the free device memory allows at this size (1 off CUDA)."""
        if not self.accelerated:
            return 1
        self._ensure_placed(width, height, 1)
        free, total = mem.device_memory(self.device)
        free += mem.allocated_bytes(self.device)
        batch = mem.choose_batch(free, total, width, height, self._placed, self.sizes, limit)
        log.info("batch auto → %d (%dx%d, '%s' profile)", batch, width, height, self._placed)
        return batch
