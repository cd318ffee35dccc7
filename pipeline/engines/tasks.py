"""The tasks the engine can render: a small registry, not a switch.

A task is a name, how to build its diffusers pipeline from the loaded components, and what its call
takes from a ``RenderRequest`` beyond the shared arguments (prompt embeddings, size, steps, guidance,
generators). The engine builds each task's pipeline once, on first use, from ``pipe.components`` (no
second load of the weights) and keeps it; the caller only names the task:

    register(Task("inpaint", build=lambda pipe: ZImageInpaintPipeline(**pipe.components),
                  call_args=lambda request: {"image": list(request.init_images),
                                             "mask_image": request.mask.images,
                                             "strength": request.strength},
                  needs=("init_images", "mask")))

``build(pipe)`` receives the engine's base text-to-image pipeline; ``needs`` names the request parts
the task cannot do without (a request that lacks one is refused before any model call). Importing
this module imports no torch; builders import diffusers when they run.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    build: Callable  # (base pipeline) -> the pipeline this task calls
    call_args: Callable = lambda request: {}  # (request) -> the task's own keyword arguments
    needs: tuple[str, ...] = ()  # request fields that must not be None
    base: bool = False  # the task runs the base pipeline itself (its offload hooks are the base's)


_TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add (or replace) a task; returns it."""
    _TASKS[task.name] = task
    return task


def get(name: str) -> Task:
    try:
        return _TASKS[name]
    except KeyError:
        raise ValueError(f"no render task {name!r}; registered: {', '.join(sorted(_TASKS))}") from None


def names() -> list[str]:
    return sorted(_TASKS)


def check(task: Task, request) -> None:
    missing = [part for part in task.needs if getattr(request, part) is None]
    if missing:
        raise ValueError(f"render task {task.name!r} needs {', '.join(missing)} in its request")


def _img2img(pipe):
    from diffusers import ZImageImg2ImgPipeline

    return ZImageImg2ImgPipeline(**pipe.components)


def _init_args(request) -> dict:
    return {"image": list(request.init_images), "strength": request.strength}


register(Task("txt2img", build=lambda pipe: pipe, base=True))
register(Task("img2img", build=_img2img, call_args=_init_args, needs=("init_images", "strength")))
