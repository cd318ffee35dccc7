"""Run configs: YAML files that say what to explore, refine and upscale (``loader``), their schema (``schema``),
where each key comes from (``source``, for ``file:line: key:`` errors) and how problems are told (``errors``).
May import the stages (their specs), models and core; never the CLI, the API or the web app."""

from .loader import ConfigError, LoadedConfig, RunConfig, load_config, parse_config  # noqa: E402,F401  (the public names)
