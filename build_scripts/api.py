"""The build API: ``uvicorn build_scripts.api:app --port 8000`` or ``python -m build_scripts.api``.

Settings: BUILD_API_HOST (127.0.0.1), BUILD_API_PORT (8000), BUILD_API_DATABASE_URL
(sqlite:///build_api.db), BUILD_API_TOKEN, MAX_CONCURRENT_BUILDS (2), MLFLOW_WEBHOOK_SECRET,
WEBHOOK_TOLERANCE_SECONDS (300), MLFLOW_TRACKING_URI, MLPREP_BASE_IMAGE. Swagger UI at /docs.
"""

import sys
from pathlib import Path

try:
    from mlprep.build.api.app import create_app
except ModuleNotFoundError:  # from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from mlprep.build.api.app import create_app

from mlprep.settings import Settings

app = create_app()

if __name__ == "__main__":
    import uvicorn

    settings = Settings()
    uvicorn.run(app, host=settings.build_api_host, port=settings.build_api_port)
