"""pipeline: explore, refine and upscale Z-Image-Turbo pictures on small GPUs.

    from pipeline import Pipeline
    with Pipeline(model="tiny-random", out="outputs") as p:
        run = p.explore("a red fox in snow", seeds=range(16))
"""
__version__ = "0.1.0"
__all__ = ["Pipeline", "UserError", "__version__"]


def __getattr__(name):  # lazy: `pipeline --help` must stay fast
    if name == "Pipeline":
        from .api import Pipeline

        return Pipeline
    if name == "UserError":
        from .core.errors import UserError

        return UserError
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
