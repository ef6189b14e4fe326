"""The training and inference pipelines of the churn project."""

from kfp import dsl

from pipelines.kfp.components import (
    batch_inference,
    evaluate_model,
    load_and_preprocess_data,
    register_and_promote,
    train_model,
)


@dsl.pipeline(name="churn-training", description="Split, train, evaluate; register and promote if good enough.")
def training_pipeline(
    churn_dataset_uri: str,
    mlflow_tracking_uri: str,
    mlflow_experiment_name: str = "churn",
    model_name: str = "churn",
    test_size_ratio: float = 0.2,
    model_type: str = "logistic_regression",
    C: float = 1.0,
    n_estimators: int = 100,
    max_depth: int = 0,
    min_roc_auc: float = 0.75,
) -> float:
    data = load_and_preprocess_data(churn_dataset_uri=churn_dataset_uri, test_size_ratio=test_size_ratio)
    trained = train_model(
        x_train=data.outputs["x_train"],
        y_train=data.outputs["y_train"],
        mlflow_tracking_uri=mlflow_tracking_uri,
        mlflow_experiment_name=mlflow_experiment_name,
        model_name=model_name,
        model_type=model_type,
        C=C,
        n_estimators=n_estimators,
        max_depth=max_depth,
    )
    # A run submitted again must train (new data behind the same URI) and register: never from KFP's cache.
    trained.set_caching_options(enable_caching=False)
    evaluated = evaluate_model(
        x_test=data.outputs["x_test"],
        y_test=data.outputs["y_test"],
        model=trained.outputs["model"],
        model_uri=trained.outputs["Output"],
        mlflow_tracking_uri=mlflow_tracking_uri,
    )
    with dsl.If(evaluated.outputs["Output"] >= min_roc_auc, name="good-enough"):
        register_and_promote(
            model_uri=trained.outputs["Output"],
            mlflow_tracking_uri=mlflow_tracking_uri,
            model_name=model_name,
            min_roc_auc=min_roc_auc,
        ).set_caching_options(enable_caching=False)
    return evaluated.outputs["Output"]


@dsl.pipeline(name="churn-inference", description="Batch predictions of a registered model.")
def inference_pipeline(
    churn_dataset_uri: str,
    mlflow_tracking_uri: str,
    model_uri: str = "models:/churn@champion",
    mlflow_experiment_name: str = "churn",
    model_name: str = "churn",
) -> int:
    # The alias may point to another version since the last run: predict again, never from the cache.
    predicted = batch_inference(
        churn_dataset_uri=churn_dataset_uri, model_uri=model_uri, mlflow_tracking_uri=mlflow_tracking_uri
    ).set_caching_options(enable_caching=False)
    return predicted.outputs["Output"]
