"""The core every layer stands on: jobs and their keys, the store, run folders and run.json, PNG metadata,
seeds, sizes, errors and the machine's cheap facts. Imports nothing of pipeline outside ``core``; no torch."""
