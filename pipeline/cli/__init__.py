"""The `pipeline` command line: one module per command, shared helpers in `common`."""
from .main import main

__all__ = ["main"]
