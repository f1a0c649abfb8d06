"""Shared plumbing of the quantization service: settings, the job store, API keys, logging.

Nothing here imports torch; the API process and the batch client import this package.
"""
