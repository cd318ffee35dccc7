"""The stages: explore, vary, refine, upscale (and its detail pass). Each turns its spec (``specs``) into jobs,
finds what the store has and renders the rest through an engine, then records the pictures in the run.
What stages share lives in ``common``; two stages never import each other in a circle.
May import engines, models, scale and core; never config, the API, the CLI or the web layer."""
