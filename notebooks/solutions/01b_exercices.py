# Solutions des exercices de 01b_mlflow_transition.ipynb (partie 3) : à ouvrir après avoir essayé.
# Dans le notebook, une fois la partie 1 exécutée : %run -i solutions/01b_exercices.py
# (ou %load solutions/01b_exercices.py pour copier le code dans une cellule).

# Exercice 1 : une forêt aléatoire, ses paramètres, ses métriques de validation croisée et un tag.
with mlflow.start_run(run_name="exercice-1") as run:  # noqa: F821 (les noms viennent du notebook)
    estimator = model.train(X_train, y_train, "random_forest", n_estimators=200, max_depth=5)  # noqa: F821
    mlflow.log_params({"model_type": "random_forest", "n_estimators": 200, "max_depth": 5})  # noqa: F821
    mlflow.log_metrics(model.cross_validate(X_train, y_train, "random_forest", n_estimators=200, max_depth=5))  # noqa: F821
    mlflow.set_tag("auteur", "solution")  # noqa: F821
exercise_run = mlflow.get_run(run.info.run_id)  # noqa: F821
assert exercise_run.data.params["n_estimators"] == "200" and "cv_roc_auc" in exercise_run.data.metrics

# Exercice 2 : le meilleur run (validation croisée) parmi les forêts aléatoires.
best = mlflow.search_runs(  # noqa: F821
    experiment_names=[EXPERIMENT],  # noqa: F821
    filter_string="params.model_type = 'random_forest'",
    order_by=["metrics.cv_roc_auc DESC"],
    max_results=1,
)
print(best[["run_id", "params.n_estimators", "params.max_depth", "metrics.cv_roc_auc"]])

# Exercice 3 : l'autolog logue les paramètres du RandomForestClassifier (n_estimators, max_depth...),
# pas de `model_type`, qui est un nom de ce projet : le filtre params.model_type = 'random_forest'
# ne peut pas le trouver. Pour le retrouver : filter_string="tags.mlflow.runName = 'rf-autolog'".
