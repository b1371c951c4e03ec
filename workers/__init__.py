"""The slip pipeline: extract -> assign -> rules, as Celery tasks or in process (same code)."""
