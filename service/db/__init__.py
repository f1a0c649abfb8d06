"""The job store's tables, engine and migrations."""
