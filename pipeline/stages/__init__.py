"""The stages: explore, vary, refine, upscale and its detail pass. Each turns its spec (``specs``) into jobs (its
plan), gives the executor (``executor``) its render call and its record, and returns a ``StageResult``; the executor
owns the store's hits and misses, the share between processes, batching, locks, progress, Stop and placing.
The super-resolution step (``superres``) sits below upscale and detail; the names of the stages are
``core.registry``'s. Stages write pictures and run.json, never HTML (the API refreshes a run's views).
May import engines, models and core, and (the executor alone) scale; never config, the API, the CLI or the web
layer. Two stages never import each other in a circle."""
