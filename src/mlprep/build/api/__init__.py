"""The build API: builds requested over HTTP or by MLflow webhooks, kept in a database."""
