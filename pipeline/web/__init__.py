"""The web layer: the static gallery page every stage writes (and the browser app)."""
