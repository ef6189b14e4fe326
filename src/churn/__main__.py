"""``python -m churn generate|train|predict|feed|reset``: the pipeline without an orchestrator, and the
trainer's tools (publish the next month of customers, reset everything between two sessions); ``doctor``:
the laptop's check."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m churn", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="write the synthetic customer table")
    generate.add_argument("--rows", type=int, default=2000)
    generate.add_argument("--seed", type=int, default=42)
    generate.add_argument("--out", type=Path, default=Path("data/customer_data.csv"))
    train = commands.add_parser("train", help="train, evaluate, register and promote")
    train.add_argument("--data", type=Path, default=Path("data/customer_data.csv"))
    train.add_argument("--model-name", default="churn")
    train.add_argument("--experiment", default="churn")
    train.add_argument("--model-type", choices=("logistic_regression", "random_forest"), default="logistic_regression")
    train.add_argument("--C", type=float, default=1.0)
    train.add_argument("--n-estimators", type=int, default=100)
    train.add_argument("--max-depth", type=int)
    train.add_argument("--test-size-ratio", type=float, default=0.2)
    train.add_argument("--threshold", type=float, default=0.75, help="minimum roc_auc to become champion")
    predict = commands.add_parser("predict", help="batch inference on a CSV")
    predict.add_argument("--model-uri", default="models:/churn@champion")
    predict.add_argument("--input", type=Path, default=Path("data/customer_data.csv"))
    predict.add_argument("--output", type=Path, default=Path("data/predictions.csv"))
    feed = commands.add_parser("feed", help="the monthly customer feed (CHURN_FEED_DIR, data/feed by default)")
    feed.add_argument("action", choices=("status", "next"), help="list the published months, or publish the next")
    reset = commands.add_parser("reset", help="pause Prefect schedules, empty caches and the MLflow store")
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    commands.add_parser("doctor", help="diagnostic du poste avant l'atelier (Python, ports, Docker, MLflow)")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        from churn import doctor

        return doctor.main()
    if args.command == "feed":
        return _feed(args.action)
    if args.command == "reset":
        return _reset(args.yes)
    # Imported here: `doctor` must answer fast on a laptop, without loading MLflow and scikit-learn.
    from churn import data, pipeline, tracking

    if args.command == "generate":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        data.generate(args.rows, args.seed).to_csv(args.out, index=False)
        print(f"wrote {args.rows} customers to {args.out}")
    elif args.command == "train":
        result = pipeline.run_training(
            args.data,
            args.model_name,
            args.experiment,
            args.model_type,
            args.C,
            args.n_estimators,
            args.max_depth,
            args.test_size_ratio,
            args.threshold,
        )
        print(json.dumps(result, indent=2))
    else:
        rows = tracking.batch_predict(args.model_uri, args.input, args.output)
        print(f"wrote {rows} predictions to {args.output}")
    return 0


def _feed(action: str) -> int:
    from churn import workshop

    customers = workshop.customer_feed()
    if action == "next":
        published = customers.publish_next()
        print(f"mois publié : {published}" if published else f"les {customers.horizon} mois sont déjà publiés")
    months = customers.months()
    print(f"{customers.folder} : {len(months)} mois publié(s) ({', '.join(months) or 'aucun'})")
    return 0


def _reset(confirmed: bool) -> int:
    from churn import reset

    if not confirmed and input("Tout remettre à zéro (MLflow, Prefect, caches) ? [o/N] ").strip().lower() not in {
        "o",
        "oui",
        "y",
        "yes",
    }:
        print("rien n'a été modifié")
        return 1
    for line in reset.reset():
        print(f"✔ {line}")
    print("Remise à zéro terminée : relancez `Prefect_Workshop.py deploy` en classe pour réactiver la planification.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
