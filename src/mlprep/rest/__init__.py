"""The REST API front end (FastAPI)."""
