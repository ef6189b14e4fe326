"""The checker of the Prefect exercises: it runs the student's code and watches what Prefect does.

A correct answer is any code that behaves right, however it is written: retries are counted on a source
that fails, cache hits are read from task states, parallel training is seen as overlapping calls, the
notifications are received by a local webhook, the deployment is read back from the Prefect server.
Messages are in French, as the workshop is. ``python Prefect_Exercises.py check --indice 2`` shows more
precise hints; ``--todo N`` checks one exercise only.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

from churn import model, tracking, workshop

STEPS = ("load_customer_data", "split_data", "engineer_features", "train_model", "evaluate_model")
WORK_POOL = "workshop-pool"
# Each simulated training lasts this long while checking, so two calls run in parallel always overlap.
TRAINING_SECONDS = 1.0


@dataclass
class Todo:
    """One exercise: its title and hints from a nudge (1) to the code itself (3)."""

    number: int
    title: str
    hints: tuple[str, str, str]


TODOS = (
    Todo(
        1,
        "tasks et flow",
        (
            "Prefect ne voit que les fonctions décorées : chaque étape devient une task, le pipeline un flow.",
            "from prefect import flow, task ; puis @task au-dessus de chaque étape, @flow au-dessus du pipeline.",
            "@task\ndef load_customer_data() -> pd.DataFrame: ...\n@flow\ndef churn_training_pipeline(...): ...",
        ),
    ),
    Todo(
        2,
        "retries avec backoff",
        (
            "Une task peut être relancée toute seule quand elle échoue : c'est une option du décorateur @task.",
            "retries= (combien de nouvelles tentatives) et retry_delay_seconds= (des délais qui grandissent).",
            "@task(retries=3, retry_delay_seconds=[10, 30, 60])\n"
            "  ou : from prefect.tasks import exponential_backoff\n"
            "       @task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=10))",
        ),
    ),
    Todo(
        3,
        "cache du feature engineering",
        (
            "Mêmes entrées, même résultat : Prefect peut relire un résultat au lieu de le recalculer.",
            "Une politique de cache (cache_policy=) ou une fonction de clé (cache_key_fn=) dans @task.",
            "from prefect.cache_policies import INPUTS\n@task(cache_policy=INPUTS, cache_expiration=timedelta(days=1))",
        ),
    ),
    Todo(
        4,
        "suivi MLflow en tasks",
        (
            "Le suivi MLflow et l'enregistrement sont des étapes comme les autres : observables dans Prefect.",
            "Décorez log_to_mlflow et register_model, et appelez-les depuis le flow.",
            "@task\ndef log_to_mlflow(...): ...\n@task\ndef register_model(...): ...",
        ),
    ),
    Todo(
        5,
        "notifications",
        (
            "Un flow peut appeler des fonctions (hooks) quand il se termine, bien ou mal.",
            "Deux fonctions (flow, flow_run, state) qui appellent workshop.notify(...), passées à @flow.",
            'def notify_success(flow, flow_run, state):\n    workshop.notify(f"✅ {flow_run.name} a réussi")\n'
            "def notify_failure(flow, flow_run, state):\n"
            '    workshop.notify(f"❌ {flow_run.name} : {state.message}")\n'
            "@flow(on_completion=[notify_success], on_failure=[notify_failure])",
        ),
    ),
    Todo(
        6,
        "paramètres typés",
        (
            "Prefect lit les annotations du flow : il valide les paramètres et l'UI affiche un formulaire.",
            "Annotez chaque paramètre de churn_training_pipeline ; un Literal limite model_type aux choix permis.",
            'def churn_training_pipeline(model_type: Literal["logistic_regression", "random_forest"] = ...,\n'
            "                            C: float = 1.0, n_estimators: int = 100, test_size_ratio: float = 0.2)",
        ),
    ),
    Todo(
        7,
        "entraînements en parallèle",
        (
            "Appeler une task l'exécute tout de suite ; la soumettre la lance en arrière-plan.",
            "task.submit(...) renvoie un future ; future.result() attend son résultat. "
            "Soumettez les deux avant d'attendre.",
            "futures = [train_model.submit(x_train, split.y_train, kind, C, n_estimators)\n"
            '           for kind in ("random_forest", "logistic_regression")]\n'
            "estimators = [future.result() for future in futures]",
        ),
    ),
    Todo(
        8,
        "déploiement planifié",
        (
            "Un déploiement enregistré sur le serveur Prefect lance le flow tout seul, selon un planning.",
            "build_deployment() renvoie churn_training_pipeline.to_deployment(...) avec interval= ou cron= ; "
            "puis, stack démarrée : python pipelines/workshop/02_prefect/Prefect_Exercises.py deploy",
            'return churn_training_pipeline.to_deployment(name="churn-exercises", interval=timedelta(minutes=2))\n'
            "puis : python pipelines/workshop/02_prefect/Prefect_Exercises.py deploy",
        ),
    ),
)


@dataclass
class Result:
    """What the checker saw for one exercise."""

    todo: Todo
    done: bool
    seen: str


@dataclass
class Observed:
    """What one run of the student's flow did, watched from inside the process."""

    state: Any = None
    error: str = ""
    trainings: list[tuple[float, float, str]] = field(default_factory=list)
    tracked_in_task: dict[str, bool] = field(default_factory=dict)
    notifications: list[str] = field(default_factory=list)


def _is_task(value: Any) -> bool:
    from prefect import Task

    return isinstance(value, Task)


def _is_flow(value: Any) -> bool:
    from prefect import Flow

    return isinstance(value, Flow)


def load(path: Path) -> ModuleType:
    """The student's file as a module (its folder on the path, as when it runs as a script)."""
    sys.path.insert(0, str(path.parent))
    name = "exercises_" + re.sub(r"\W", "_", str(path))  # one module per file, even for files of one name
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path} : pas un fichier Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class _Webhook:
    """A local endpoint standing for Discord and Slack: what the student's hooks send lands here."""

    def __init__(self) -> None:
        received: list[str] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                received.append(str(body.get("content") or body.get("text") or body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def _watching(observed: Observed) -> Iterator[None]:
    """Slow and time each training, note whether MLflow calls ran inside a Prefect task, catch alerts."""
    from prefect.context import TaskRunContext

    train, log_run, register = model.train, tracking.log_training_run, tracking.register

    def slow_train(*args: Any, **kwargs: Any) -> Any:
        bound = inspect.signature(train).bind(*args, **kwargs)
        start = time.monotonic()
        time.sleep(TRAINING_SECONDS)
        try:
            return train(*args, **kwargs)
        finally:
            kind = str(bound.arguments.get("model_type", "logistic_regression"))
            observed.trainings.append((start, time.monotonic(), kind))

    def in_task(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            observed.tracked_in_task[name] = TaskRunContext.get() is not None
            return function(*args, **kwargs)

        return wrapper

    webhook = _Webhook()
    try:
        with (
            mock.patch.object(model, "train", slow_train),
            mock.patch.object(tracking, "log_training_run", in_task("log_to_mlflow", log_run)),
            mock.patch.object(tracking, "register", in_task("register_model", register)),
            mock.patch.dict(os.environ, {"DISCORD_WEBHOOK_URL": webhook.url, "SLACK_WEBHOOK_URL": ""}),
        ):
            yield
    finally:
        observed.notifications = list(webhook.received)
        webhook.close()


def _run_flow(module: ModuleType, source: workshop.FlakySource, loader: Any) -> Observed:
    """The student's pipeline once, with the given source and loader, watched."""
    observed = Observed()
    with (
        _watching(observed),
        mock.patch.object(module, "SOURCE", source),
        mock.patch.object(module, "load_customer_data", loader),
    ):
        try:
            observed.state = module.churn_training_pipeline(return_state=True)
        except Exception as error:  # the student's code: reported, never raised
            observed.error = f"{type(error).__name__}: {error}"
    return observed


class Checker:
    """Runs what each exercise needs (at most one successful and one failing flow run) and judges it."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self._success: Observed | None = None
        self._failure: Observed | None = None

    @property
    def flow(self) -> Any:
        return getattr(self.module, "churn_training_pipeline", None)

    def success(self) -> Observed:
        """A run on a source that always answers (cached: several exercises read it)."""
        if self._success is None:
            source = workshop.FlakySource(workshop.data_path(), failures=0)
            self._success = _run_flow(self.module, source, self.module.load_customer_data)
        return self._success

    def failure(self) -> Observed:
        """A run whose source never answers (retries off, so it fails at once)."""
        if self._failure is None:
            loader = self.module.load_customer_data
            if _is_task(loader):
                loader = loader.with_options(retries=0)
            source = workshop.FlakySource(workshop.data_path(), failures=10**6)
            self._failure = _run_flow(self.module, source, loader)
        return self._failure

    def _needs_flow(self) -> str:
        return "" if _is_flow(self.flow) else "churn_training_pipeline n'est pas encore un flow (TODO 1)"

    def todo1(self) -> tuple[bool, str]:
        missing = [name for name in STEPS if not _is_task(getattr(self.module, name, None))]
        if missing or not _is_flow(self.flow):
            shown = ", ".join(missing) + ("" if _is_flow(self.flow) else " ; churn_training_pipeline")
            return False, f"pas encore décorés : {shown.strip(' ;')}"
        run = self.success()
        if run.error or not run.state.is_completed():
            return False, f"le flow ne termine pas : {run.error or run.state.message}"
        return True, "le flow et ses 5 tasks s'exécutent dans Prefect"

    def todo2(self) -> tuple[bool, str]:
        from prefect import flow

        loader = getattr(self.module, "load_customer_data", None)
        if not _is_task(loader):
            return False, "load_customer_data n'est pas une task (TODO 1)"
        delays = list(loader.retry_delay_seconds or []) if isinstance(loader.retry_delay_seconds, list) else []
        if not delays and loader.retry_delay_seconds:
            delays = [float(loader.retry_delay_seconds)] * max(loader.retries or 0, 1)
        source = workshop.FlakySource(workshop.data_path(), failures=2)
        fast = loader.with_options(retry_delay_seconds=0)

        @flow(name="exercise-check-retries")
        def probe() -> Any:
            return fast(return_state=True)

        with mock.patch.object(self.module, "SOURCE", source):
            state = probe()
        if not state.is_completed():
            return False, f"l'API a échoué 2 fois et la task aussi ({source.calls} appel(s), retries={loader.retries})"
        if len(delays) < 2 or delays[-1] <= delays[0] or sorted(delays) != delays:
            return False, f"les retries marchent ({source.calls} appels), mais sans backoff : délais {delays or [0]}"
        return True, f"2 pannes surmontées en {source.calls} appels, délais croissants {delays}"

    def todo3(self) -> tuple[bool, str]:
        from prefect import flow

        features = getattr(self.module, "engineer_features", None)
        if not _is_task(features):
            return False, "engineer_features n'est pas une task (TODO 1)"
        raw = workshop.FlakySource(workshop.data_path(), failures=0).fetch().drop(columns=["Churn"]).head(200)

        @flow(name="exercise-check-cache")
        def probe() -> list[str]:
            return [features(raw, return_state=True).name for _ in range(2)]

        states = probe()
        if states[-1] != "Cached":
            return False, f"deux appels avec les mêmes données : états {states}, le second devrait être Cached"
        return True, f"deux appels avec les mêmes données : états {states}"

    def todo4(self) -> tuple[bool, str]:
        names = ("log_to_mlflow", "register_model")
        if not all(_is_task(getattr(self.module, name, None)) for name in names):
            return False, "log_to_mlflow et register_model ne sont pas encore des tasks"
        if problem := self._needs_flow():
            return False, problem
        run = self.success()
        outside = [name for name in names if not run.tracked_in_task.get(name)]
        if outside:
            return False, f"pendant le flow, {', '.join(outside)} ne s'exécute pas comme une task ({run.error})"
        return True, "le run MLflow et la version du modèle sont créés par des tasks"

    def todo5(self) -> tuple[bool, str]:
        if problem := self._needs_flow():
            return False, problem
        success, failure = self.success(), self.failure()
        if not success.notifications:
            return False, "un run réussi n'a envoyé aucune notification (hook on_completion)"
        if not failure.notifications:
            return False, "un run en échec n'a envoyé aucune notification (hook on_failure)"
        return True, f"reçu : « {success.notifications[0][:60]} » puis « {failure.notifications[0][:60]} »"

    def todo6(self) -> tuple[bool, str]:
        if problem := self._needs_flow():
            return False, problem
        properties = self.flow.parameters.properties
        untyped = [name for name, schema in properties.items() if not {"type", "enum", "anyOf", "$ref"} & set(schema)]
        if len(properties) < 3 or untyped:
            return False, f"paramètres sans type : {', '.join(untyped) or 'aucun paramètre'}"
        from prefect.exceptions import ParameterTypeError

        try:
            self.flow.validate_parameters({"C": "beaucoup"})
        except ParameterTypeError:
            return True, f"Prefect valide {', '.join(properties)} (C='beaucoup' est refusé)"
        return False, "C='beaucoup' est accepté : annotez C (float)"

    def todo7(self) -> tuple[bool, str]:
        if problem := self._needs_flow():
            return False, problem
        trainings = self.success().trainings
        kinds = sorted({kind for _, _, kind in trainings})
        if len(kinds) < 2:
            return False, f"un seul type de modèle entraîné ({', '.join(kinds) or 'aucun'}) : ajoutez l'autre"
        overlap = any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(trainings) for b in trainings[i + 1 :])
        if not overlap:
            return False, f"{len(trainings)} entraînements, l'un après l'autre : aucun ne chevauche un autre"
        return True, f"{len(trainings)} entraînements ({', '.join(kinds)}) qui se chevauchent dans le temps"

    def todo8(self) -> tuple[bool, str]:
        try:
            deployment = self.module.build_deployment()
        except Exception as error:  # the student's code: reported, never raised
            return False, f"build_deployment() lève {type(error).__name__}: {error}"
        if deployment is None or not getattr(deployment, "schedules", None):
            return False, f"build_deployment() doit renvoyer un déploiement planifié (renvoie {deployment!r:.60})"
        if not os.environ.get("PREFECT_API_URL"):
            return False, "PREFECT_API_URL n'est pas défini : démarrez la stack pour enregistrer le déploiement"
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        name = f"{deployment.flow_name}/{deployment.name}"
        try:
            with get_client(sync_client=True) as client:
                registered = client.read_deployment_by_name(name)
        except ObjectNotFound:
            return False, f"« {name} » n'est pas enregistré : lancez Prefect_Exercises.py deploy"
        active = [schedule for schedule in registered.schedules if schedule.active]
        if not active:
            return False, f"« {name} » est enregistré sans planning actif"
        return True, f"« {name} » enregistré, {len(active)} planning(s) actif(s)"

    def check(self, number: int) -> Result:
        todo = TODOS[number - 1]
        try:
            done, seen = getattr(self, f"todo{number}")()
        except Exception as error:  # the student's code: reported, never raised
            done, seen = False, f"{type(error).__name__}: {error}"
        return Result(todo, done, seen)


def report(results: list[Result], hint_level: int) -> int:
    """Print each exercise (done, or what was seen and the hints up to ``hint_level``); returns how many are left."""
    for result in results:
        mark = "✅" if result.done else "❌"
        print(f"{mark} TODO {result.todo.number} — {result.todo.title} : {result.seen}")
        if not result.done:
            for level, hint in enumerate(result.todo.hints[:hint_level], start=1):
                print(f"     indice {level} : " + hint.replace("\n", "\n                "))
    missing = sum(not result.done for result in results)
    done = len(results) - missing
    print(f"\n{done}/{len(results)} exercices terminés" + (" — bravo !" if not missing else ""))
    if missing and hint_level < 3:
        print(f"Plus d'aide : check --indice {hint_level + 1}")
    return missing


def deploy(module: ModuleType, pool: str = WORK_POOL) -> str:
    """Register the student's deployment on the Prefect server (its work pool created if missing)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    deployment = module.build_deployment()
    if deployment is None:
        raise SystemExit("build_deployment() renvoie None : faites d'abord le TODO 8")
    if not os.environ.get("PREFECT_API_URL"):
        raise SystemExit(
            "PREFECT_API_URL n'est pas défini : démarrez la stack (docker compose up -d) puis\n"
            "  bash :        export PREFECT_API_URL=http://localhost:4200/api\n"
            '  PowerShell :  $env:PREFECT_API_URL = "http://localhost:4200/api"'
        )
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    deployment_id = deployment.apply(work_pool_name=pool)
    print(f"déploiement « {deployment.flow_name}/{deployment.name} » enregistré ({deployment_id})")
    return str(deployment_id)


def main(path: Path, argv: list[str] | None = None) -> int:
    """``run``, ``check [--todo N] [--indice N] [--module FILE]`` and ``deploy`` of an exercises file."""
    parser = argparse.ArgumentParser(prog=path.name, description="Exercices Prefect : exécuter, vérifier, déployer")
    parser.add_argument("command", choices=("run", "check", "deploy"))
    parser.add_argument("--module", type=Path, default=path, help="fichier à vérifier (défaut : celui-ci)")
    parser.add_argument("--todo", type=int, choices=range(1, len(TODOS) + 1), help="ne vérifier que ce TODO")
    parser.add_argument("--indice", type=int, choices=(1, 2, 3), default=1, help="niveau d'aide : 1, 2 ou 3 (le code)")
    args = parser.parse_args(argv)
    module = load(args.module.resolve())
    if args.command == "run":
        print(module.churn_training_pipeline())
        return 0
    if args.command == "deploy":
        deploy(module)
        return 0
    checker = Checker(module)
    numbers = [args.todo] if args.todo else [todo.number for todo in TODOS]
    return 1 if report([checker.check(number) for number in numbers], args.indice) else 0
