"""mlflow-preprocessing-runner: run the ``pre_processing`` code logged with an MLflow run."""

__version__ = "0.1.0"
