"""The Python API. The CLI is a thin layer over it; it returns typed results and never prints."""
from __future__ import annotations

import functools
from pathlib import Path

from .session import Session
from .stages.specs import ExploreSpec, build
from .stages.common import StageResult


class Pipeline:
    """Explore → refine → upscale over one store, with the model loaded once and reused.

        with Pipeline(model="tiny-random", out="outputs") as p:
            run = p.explore("a red fox in snow", seeds=range(16))
    """

    def __init__(self, model: str | None = None, out: str | Path = "outputs", *, store: str | Path | None = None,
                 device: str | None = None, dtype: str = "auto", memory: str = "auto", progress: bool = False,
                 transformer: str | Path | None = None, weights_dtype: str | None = None, compile: bool = False,
                 attention: str | None = None, text_encoder: str | Path | None = None, vae: str | Path | None = None,
                 ray: str | None = None):
        """``memory``: auto, full, balanced, low or minimal (see the README's memory profiles).
        ``transformer``: a single-file .safetensors/.gguf transformer (``text_encoder``, ``vae``: single-file
        Qwen3-4B and Flux VAE, ComfyUI's files); ``weights_dtype="int8"`` / ``"fp8"``: 8-bit transformer
        weights (enter the model fingerprint); ``compile``/``attention``: opt-in speed switches (torch.compile,
        attention backend).  ``ray``: render on a Ray pool of workers (``"local"`` starts a Ray here, ``"auto"``
        joins the cluster ``ray start`` runs, or an address); the store and the runs stay in this process.
        """
        from .engines.memory import EngineOptions

        kwargs = {"model": model} if model else {}
        options = EngineOptions(transformer=str(transformer) if transformer else None, weights_dtype=weights_dtype,
                                compile=compile, attention=attention,
                                text_encoder=str(text_encoder) if text_encoder else None, vae=str(vae) if vae else None)
        self.session = Session(out=Path(out), store_path=Path(store) if store else None, device=device, dtype=dtype,
                               memory=memory, progress=progress, engine_options=options, ray=ray, **kwargs)

    # -------------------------------------------------------------- stages

    def explore(self, prompt, *, seeds=None, count: int | None = None, seed: int | None = None,
                size=(512, 512), steps: int = 8, guidance: float = 0.0, negative: str = "", batch="auto",
                run: str | None = None, variance: float = 0.0, variance_share: float | None = None,
                variance_steps: float | None = None, loras=None, dry_run: bool = False, on_picture=None,
                stop=None) -> StageResult:
        """Render one candidate per seed (``seeds``, or ``count`` seeds from ``seed``) and lay them out in a run.
        ``prompt`` may be an ``ExploreSpec`` (what the CLI, configs and the app build): the keywords are then
        not given, and this is ``explore(spec, run=..., dry_run=..., on_picture=..., stop=...)``.

        ``variance`` (0 = off, 0.1–0.5 typical, up to 2) adds seeded noise to the prompt embedding for
        the first ``variance_steps`` of the steps (default 0.2) on ``variance_share`` of its values
        (default 0.5), so Turbo's look-alike seeds spread out.

        ``loras``: ``[("style", 0.8), "other.safetensors"]`` — names (see ``loras()``) or files, with a
        weight (a plain string: 1.0); None or [] = no LoRA.

        ``on_picture(item)`` is called as each candidate is in the run folder (stored ones first);
        ``stop``, a ``threading.Event``: once set, the run ends after the current picture and keeps
        the finished ones (``result.items`` holds only those).
        """
        from .stages.explore import explore

        if isinstance(prompt, ExploreSpec):
            spec = prompt
        else:
            spec = self.explore_spec(prompt, seeds=seeds, count=count, seed=seed, size=size, steps=steps,
                                     guidance=guidance, negative=negative, batch=batch, variance=variance,
                                     variance_share=variance_share, variance_steps=variance_steps, loras=loras)
        return self._refreshed(explore(self.session, spec, run=run, dry_run=dry_run, on_picture=on_picture, stop=stop))

    @staticmethod
    def explore_spec(prompt: str, *, seeds=None, count: int | None = None, seed: int | None = None,
                     size=(512, 512), steps: int = 8, guidance: float = 0.0, negative: str = "", batch="auto",
                     variance: float = 0.0, variance_share: float | None = None, variance_steps: float | None = None,
                     loras=None) -> ExploreSpec:
        """The ExploreSpec of ``explore``'s keywords (``count`` seeds from ``seed``: a random base seed when None)."""
        from .core.seeds import seeds_from_count
        from .stages.specs import DEFAULT_VARIANCE_SHARE, DEFAULT_VARIANCE_STEPS

        if seeds is None:
            if count is None:
                raise_user("give seeds or count")
            seeds = seeds_from_count(count, random_base_seed() if seed is None else seed)
        elif count is not None:
            raise_user("give either seeds or count, not both")
        if isinstance(seeds, range):
            seeds = list(seeds)
        return build(ExploreSpec, prompt=prompt, negative=negative, seeds=seeds, size=size, steps=steps,
                     guidance=guidance, batch=batch, variance=variance,
                     variance_share=DEFAULT_VARIANCE_SHARE if variance_share is None else variance_share,
                     variance_steps=DEFAULT_VARIANCE_STEPS if variance_steps is None else variance_steps,
                     loras=loras or [])

    def refine(self, picks=None, /, *, seeds=None, run: str | Path | StageResult | None = None,
               source: str | Path | None = None,
               prompt: str | None = None, seed: int | None = None, size=None, scale: float | None = None,
               mode: str = "hires", strength: float | None = None, steps: int | None = None,
               guidance: float | None = None, negative: str | None = None, upscaler: str = "lanczos", batch="auto",
               loras=None, dry_run: bool = False, on_picture=None, stop=None, detail_faces: float = 0.0,
               face_prompt: str | None = None, face_confidence: float = 0.3, face_size: int = 1024) -> StageResult:
        """Refine picked candidates of a run (``seeds``; the latest run unless ``run``) or one image
        (``source``) at ``size``, or the candidate's size × ``scale`` (default 2).

        ``mode="hires"`` enlarges the candidate and re-renders it image-to-image at ``strength``
        (keeps the composition); ``"rerender"`` renders the same seed from text at the new size.
        ``None`` takes the value from the run or the image's metadata, else the default.
        ``loras``: None = the LoRAs the candidate (or image) was made with, found again by digest;
        ``[]`` = none; a list like ``explore``'s replaces them.
        The first argument is the seeds, or the run to refine as ``explore`` returned it:
        ``p.refine(p.explore(...), seeds=[3, 7])``, or a ``RefineSpec`` (then only ``run`` and ``dry_run``).
        ``detail_faces`` (0 = off, 0.3-0.4 typical): then re-draw each face found at that strength (``inpaint``'s
        face pass: ``42i1`` beside the refined 42, in the result's ``fixes``).
        """
        from .stages.refine import refine
        from .stages.specs import RefineSpec

        faces = (detail_faces, face_prompt, face_confidence, face_size)
        _check_detail_faces(*faces)
        if isinstance(picks, RefineSpec):
            run, _ = _run_and_seeds(run, None)
            return self._refreshed(self._detail_faces(refine(self.session, picks, run=run, dry_run=dry_run,
                                                             on_picture=on_picture, stop=stop), "refine", *faces))
        if isinstance(picks, StageResult):
            if run is not None:
                raise_user("give the run once: as the first argument or as run=, not both")
            run = picks
        elif picks is not None:
            if seeds is not None:
                raise_user("give the seeds once: as the first argument or as seeds=, not both")
            seeds = picks
        run, seeds = _run_and_seeds(run, seeds)
        spec = self.refine_spec(seeds, source=source, prompt=prompt, seed=seed, size=size, scale=scale, mode=mode,
                                strength=strength, steps=steps, guidance=guidance, negative=negative,
                                upscaler=upscaler, batch=batch, loras=loras)
        return self._refreshed(self._detail_faces(refine(self.session, spec, run=run, dry_run=dry_run,
                                                         on_picture=on_picture, stop=stop), "refine", *faces))

    @staticmethod
    def refine_spec(seeds=None, *, source: str | Path | None = None, prompt: str | None = None,
                    seed: int | None = None, size=None, scale: float | None = None, mode: str = "hires",
                    strength: float | None = None, steps: int | None = None, guidance: float | None = None,
                    negative: str | None = None, upscaler: str = "lanczos", batch="auto", loras=None):
        """The RefineSpec of ``refine``'s keywords."""
        from .stages.specs import DEFAULT_REFINE_STRENGTH, RefineSpec

        return build(RefineSpec, seeds=list(seeds) if isinstance(seeds, range) else seeds,
                     source=str(source) if source is not None else None, prompt=prompt, seed=seed, size=size,
                     scale=scale, mode=mode, strength=DEFAULT_REFINE_STRENGTH if strength is None else strength,
                     steps=steps, guidance=guidance, negative=negative, upscaler=upscaler, batch=batch, loras=loras)

    def upscale(self, images=None, *, run: str | Path | None = None, seeds=None, upscaler: str | None = None,
                scale: float | None = None, tile: int | None = None, overlap: int | None = None,
                precision: str = "auto", out_dir: str | Path | None = None, dry_run: bool = False,
                detail: float = 0.0, detail_tile: int = 1024, prompt: str | None = None, model: str | None = None,
                on_progress=None, spec=None, stop=None, detail_faces: float = 0.0, face_prompt: str | None = None,
                face_confidence: float = 0.3, face_size: int = 1024) -> StageResult:
        """Super-resolve pictures with Real-ESRGAN (``upscaler``: a preset name or a weights file).

        ``images``: None (the refined pictures of ``run``, default the latest, or its ``seeds``), a
        StageResult (e.g. what ``refine`` returned), or image files/folders (written to ``out_dir``,
        default ``OUT/upscaled``).  ``on_progress(done_tiles, total_tiles)`` is called as tiles
        finish (pictures already in the store count no tiles).  A KeyboardInterrupt keeps the
        pictures finished before it.

        ``detail`` (0 = off, 0.2-0.4 typical): after the upscale to ``scale`` (default 2 then), the
        diffusion model re-draws the picture image-to-image at that strength over tiles of at most
        ``detail_tile`` output pixels, with the picture's prompt and seed (``prompt`` for a file that
        carries none).  ``model``: the diffusion model (default: this Pipeline's).
        ``spec``: an ``UpscaleSpec`` holding those settings (then the keywords for them are not given);
        ``stop`` (a threading.Event) ends after the picture under way.
        ``detail_faces`` (0 = off): then re-draw each face found at that strength (``inpaint``'s face pass,
        in the result's ``fixes``), with this Pipeline's model.
        """
        spec = spec or _upscale_spec(upscaler, scale, tile, overlap, precision, detail, detail_tile, prompt, model)
        faces = (detail_faces, face_prompt, face_confidence, face_size)
        _check_detail_faces(*faces)
        run_dir, inputs = self._upscale_inputs(images, run, seeds, spec.scale, out_dir, spec.detail)
        with self._session_for(spec.model if spec.with_detail else None) as session:
            if spec.with_detail:  # the detail pass draws on the super-resolution step; else the plain upscale
                from .stages import detail as stage

                run = functools.partial(stage.upscale, settings=_detail_settings(spec))
            else:
                from .stages import upscale as stage

                run = stage.upscale
            try:
                result = run(session, inputs, model=spec.upscaler, scale=spec.scale, tile=spec.tile,
                             overlap=spec.overlap, precision=spec.precision, run_dir=run_dir, dry_run=dry_run,
                             on_progress=on_progress, stop=stop)
            except KeyboardInterrupt:
                if run_dir is not None and not dry_run:
                    self._refresh_views(run_dir)  # the pictures finished before it are in run.json already
                raise
        return self._refreshed(self._detail_faces(result, "upscale", *faces))

    def estimate_upscale(self, images=None, *, run: str | Path | None = None, seeds=None,
                         upscaler: str | None = None, scale: float | None = None, tile: int | None = None,
                         overlap: int | None = None, precision: str = "auto", detail: float = 0.0,
                         detail_tile: int = 1024, prompt: str | None = None, model: str | None = None,
                         spec=None) -> float:
        """Seconds ``upscale`` with the same arguments would take on this machine (0 when every
        picture is in the store).  Loads the upscaler; the first time on this machine it times two small
        probes (64² and 128², remembered in the store); the upscale that follows reuses the loaded model.  With ``detail``
        the diffusion part is added from a probe of the model (a 256² tile at 1 and 2 steps)."""
        spec = spec or _upscale_spec(upscaler, scale, tile, overlap, precision, detail, detail_tile, prompt, model)
        _, inputs = self._upscale_inputs(images, run, seeds, spec.scale, None, spec.detail)
        with self._session_for(spec.model if spec.with_detail else None) as session:
            if spec.with_detail:
                from .stages import detail as stage

                return stage.estimate(session, inputs, settings=_detail_settings(spec), model=spec.upscaler,
                                      scale=spec.scale, tile=spec.tile, overlap=spec.overlap, precision=spec.precision)
            from .stages import upscale as stage

            return stage.estimate(session, inputs, model=spec.upscaler, scale=spec.scale, tile=spec.tile,
                                  overlap=spec.overlap, precision=spec.precision)

    def _refreshed(self, result: StageResult) -> StageResult:
        """The run's views (its gallery page) refreshed once, after a stage: the stages write no HTML."""
        if isinstance(result, StageResult) and result.run_dir is not None and not result.dry_run:
            self._refresh_views(result.run_dir)
        return result

    def _refresh_views(self, run_dir: Path) -> None:
        from .scale.distributed import is_main_process
        from .web.gallery import write_gallery

        if is_main_process() and (Path(run_dir) / "run.json").is_file():  # a run stopped before its first picture
            write_gallery(Path(run_dir))

    def _session_for(self, model: str | None):
        """This Pipeline's session, or (``model`` names another) one beside it with the same settings."""
        import contextlib
        import dataclasses

        from .models.names import check_model

        if model is None or check_model(model) == self.session.model:
            return contextlib.nullcontext(self.session)
        other = dataclasses.replace(self.session, model=model)
        other.store = self.session.store
        return contextlib.closing(other)

    def _upscale_inputs(self, images, run, seeds, scale, out_dir, detail=0.0):
        from .core.seeds import parse_seeds
        from .stages import upscale as stage

        run_dir = None
        if images is None:
            run_dir, inputs = stage.run_inputs(self.session.out, run,
                                             parse_seeds(seeds, variations=True) if seeds is not None else None)
        elif isinstance(images, StageResult) and images.run_dir is not None:
            run_dir = images.run_dir
            inputs = [stage.UpscaleInput(item.path, run_dir / stage.STAGE_DIR / f"seed-{item.seed}.png", item.seed)
                      for item in images.items]
        else:
            paths = images.paths if isinstance(images, StageResult) else [Path(p) for p in (
                [images] if isinstance(images, (str, Path)) else images)]
            target = Path(out_dir) if out_dir else self.session.out / "upscaled"
            if scale is None and detail > 0:
                from .stages.detail import DEFAULT_DETAIL_SCALE

                scale = DEFAULT_DETAIL_SCALE
            inputs = stage.file_inputs(paths, target, stage.scale_label(scale))
        if not inputs:
            raise_user("nothing to upscale")
        return run_dir, inputs

    def vary(self, seeds, *, count: int = 4, strength="subtle", steps: int | None = None,
             run: str | Path | StageResult | None = None, batch="auto", loras=None,
             dry_run: bool = False, on_picture=None, stop=None) -> StageResult:
        """More candidates like picked ones: ``count`` image-to-image variations of each of ``seeds``
        (seeds or variation ids like ``"42v3"``) of ``run`` (the latest when None), at the candidate's
        size with new noise. ``strength``: ``"subtle"`` (0.5), ``"strong"`` (0.85) or a number in (0, 1).
        The variations join the run's candidates as ``42v1``, ``42v2``, …
        ``loras``: None = each candidate's own LoRAs; ``[]`` = none; a list like ``explore``'s replaces them.
        ``seeds`` may be a ``VarySpec`` (then only ``run`` and ``dry_run``).
        """
        from .stages.specs import VarySpec
        from .stages.vary import vary

        run, seeds = _run_and_seeds(run, seeds)
        spec = seeds if isinstance(seeds, VarySpec) else self.vary_spec(seeds, count=count, strength=strength,
                                                                         steps=steps, batch=batch, loras=loras)
        return self._refreshed(vary(self.session, spec, run=run, dry_run=dry_run, on_picture=on_picture, stop=stop))

    @staticmethod
    def vary_spec(seeds, *, count: int = 4, strength="subtle", steps: int | None = None, batch="auto", loras=None):
        """The VarySpec of ``vary``'s keywords."""
        from .stages.specs import VarySpec

        return build(VarySpec, seeds=list(seeds) if isinstance(seeds, range) else seeds, count=count,
                     strength=strength, steps=steps, batch=batch, loras=loras)

    def inpaint(self, image=None, *, run: str | Path | StageResult | None = None, seeds=None, source: str = "explore",
                mask=None, prompt: str | None = None, strength: float | None = None, mask_blur: int = 4,
                area: str = "masked", padding: int = 32, work: int = 1024, extend: str | None = None,
                faces: bool = False, hands: bool = False, face_prompt: str | None = None,
                face_confidence: float = 0.3, crop_factor: float = 2.5, seed: int | None = None,
                steps: int | None = None, loras=None, dry_run: bool = False, spec=None) -> StageResult:
        """Fix part of a picture: ``seeds`` of ``run`` (``source``: which stage's pictures; ids like ``"42i1"``)
        or ``image`` (a file), re-drawn under ``mask`` (white = re-draw, or an RGBA picture's transparent
        pixels), on each face (``faces``, at ``strength`` 0.35 unless given), or on a new border (``extend``,
        ``"left:256,bottom:128"``). ``area="masked"`` renders the mask's box + ``padding`` at about ``work``²
        px and pastes it back through the mask blurred by ``mask_blur`` px; ``"whole"`` the whole picture.
        Pixels outside the blurred mask stay the parent's. Fixes join the run as ``42i1``, ``42i2``, …
        ``spec``: an ``InpaintSpec`` instead of the keywords (a config's).
        """
        from .stages.inpaint import inpaint
        from .stages.inpaint_spec import InpaintSpec

        run, seeds = _run_and_seeds(run, seeds)
        if spec is None:
            spec = build(InpaintSpec, seeds=seeds, image=str(image) if image is not None else None, source=source,
                         mask=str(mask) if mask is not None else None, prompt=prompt, strength=strength,
                         mask_blur=mask_blur, area=area, padding=padding, work=work, extend=extend, faces=faces,
                         hands=hands, face_prompt=face_prompt, face_confidence=face_confidence,
                         crop_factor=crop_factor, seed=seed, steps=steps, loras=loras)
        return self._refreshed(inpaint(self.session, spec, run=run, dry_run=dry_run))

    def _detail_faces(self, result: StageResult, source: str, strength: float, face_prompt, confidence, size):
        """``--detail-faces``: the face pass over what a stage made, its pictures in ``result.fixes``."""
        if not strength or result.dry_run or not result.items:
            return result
        from .stages.inpaint import detail_faces

        result.fixes = detail_faces(self.session, result, source, strength, face_prompt=face_prompt,
                                    confidence=confidence, work=size)
        return result

    def loras(self) -> list[dict]:
        """The LoRA files found in weights/loras/, $PIPELINE_LORAS and, when the model is a ComfyUI
        install, its models/loras/: ``[{"name", "path", "folder", "size"}]`` (no torch, no hashing)."""
        from .models.loras import list_loras

        return [file.to_json() for file in list_loras(self.session.model)]

    def gallery(self, run: str | Path | None = None) -> Path:
        """(Re)write a run's ``index.html`` (the latest run when None) and return its path."""
        from .web.gallery import build_gallery

        return build_gallery(self.session.out, run)

    def repair(self, run: str | Path, *, force: bool = False):
        """Rebuild ``run``'s run.json (a path, or a name in ``out``) from the store when it is missing or
        corrupt, or always with ``force``; returns a ``repair.RepairResult``."""
        from .repair import find_run_dir, repair

        return repair(find_run_dir(self.session.out, run), self.session.store, force=force)

    # -------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Release the model and the memory it holds."""
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _check_detail_faces(strength: float, face_prompt=None, confidence: float = 0.3, size: int = 1024) -> None:
    """--detail-faces refused before anything is written: out of range, or no detector installed."""
    if not strength:
        return
    if not 0 < float(strength) <= 1:
        raise_user(f"--detail-faces must be above 0 and at most 1 (0.3 to 0.4 are typical), not {strength:g}")
    if not 0 <= float(confidence) <= 10:
        raise_user(f"--face-confidence must be between 0 and 10, not {confidence:g}")
    if not 64 <= int(size) <= 4096:
        raise_user(f"--face-size must be between 64 and 4096, not {size}")
    from .engines.faces import detector_id

    detector_id()  # no detector: one sentence, before the stage runs


def _upscale_spec(upscaler, scale, tile, overlap, precision, detail, detail_tile, prompt, model):
    """upscale's and estimate_upscale's keywords as the UpscaleSpec (its validators: one sentence each)."""
    from .stages.specs import UpscaleSpec

    return build(UpscaleSpec, upscaler=upscaler, scale=scale, tile=tile, overlap=overlap, precision=precision,
                 detail=detail, detail_tile=detail_tile, prompt=prompt, model=model)


def _detail_settings(spec):
    """The detail pass's settings of an UpscaleSpec with detail."""
    from .stages.detail import DetailSettings

    return DetailSettings(float(spec.detail), int(spec.detail_tile), spec.prompt)


def _run_and_seeds(run, seeds):
    """A run given as a StageResult or a Path, as the stages take it (a string); a range of seeds as a list."""
    if isinstance(run, StageResult):
        if run.run_dir is None:
            raise_user("that result has no run folder (it was a dry run)")
        run = str(run.run_dir)
    elif isinstance(run, Path):
        run = str(run)
    return run, list(seeds) if isinstance(seeds, range) else seeds


def random_base_seed() -> int:
    import secrets

    from .scale.distributed import agree

    return agree(secrets.randbelow(2**32))  # the same seeds on every process of a multi-GPU run


def raise_user(message: str):
    from .core.errors import UserError

    raise UserError(message)
