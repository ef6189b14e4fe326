"""Kubeflow Pipelines of the churn project: components over the `churn` steps, two pipelines."""
