"""The REST API front end (Starlette; FastAPI only writes its OpenAPI document)."""
