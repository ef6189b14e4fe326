"""Save an MLflow pyfunc that returns its input (for `mlflow models serve`). Usage: python mlflow_model.py PATH"""

from __future__ import annotations

import shutil
import sys

import mlflow.pyfunc


class Identity(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


if __name__ == "__main__":
    shutil.rmtree(sys.argv[1], ignore_errors=True)
    mlflow.pyfunc.save_model(sys.argv[1], python_model=Identity())
