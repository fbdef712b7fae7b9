"""Shared fixtures: a small demo dataset with a trained champion model in a temporary MLflow."""

from __future__ import annotations

import fcntl
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from features.config import config_path_for_data, feature_config_from_file
from features.contract import Tables
from features.io import load_tables
from ingest.demo_data import DemoConfig, write_demo
from training.config import train_config_from_file
from training.model import ChurnModel
from training.pipeline import TrainingResult, train_from_tables
from training.tracking import Champion, load_champion

_BENTOML_HOMES: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """One private BentoML home for the whole test session: BentoML fixes its store at the first
    BENTOML_HOME it sees, so whichever test touches it first, nothing lands in ~/bentoml."""
    home = tempfile.mkdtemp(prefix="churn-tests-bentoml-")
    _BENTOML_HOMES.append(home)
    os.environ["BENTOML_HOME"] = home
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"


# The files whose fixtures train the longest, started first: pytest-xdist hands out whole files
# in collection order (--dist loadfile), and the 12,000-customer training run, collected near
# the end, kept one core busy for minutes after the other had finished. test_service.py second:
# its worker trains the shared small champion (small_champion) at the start, while the others
# run files that do not need it; started later, the other workers had waited for it (54 s).
LONGEST_FIRST = (
    "test_training_model.py",
    "test_service.py",
    "test_registry_per_dataset.py",
    "test_notebooks.py",
    "test_training_small_runs.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest files first (LONGEST_FIRST), the others in their order."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the session's BentoML home (each xdist worker made its own): repeated runs
    otherwise leave one store per process in the temporary folder."""
    for home in _BENTOML_HOMES:
        shutil.rmtree(home, ignore_errors=True)


@dataclass
class SmallChampion:
    root: Path
    data_dir: Path
    tracking_uri: str
    tables: Tables
    champion: Champion  # LightGBM, or the baseline registered after it when one won (the gate)
    lightgbm: ChurnModel  # the LightGBM model of the run, champion or not
    result: TrainingResult  # the run itself
    store_as_trained: Path  # a copy of the MLflow store (database, artifacts) right after the run


# A folder every test process of a run shares (CI sets it for the main suite's workers and the
# Spark suite beside them); without it, xdist's workers share their base temporary folder's parent.
SHARED_DIR_ENV = "CHURN_TESTS_SHARED_DIR"


def _shared_dir(tmp_path_factory) -> Path | None:
    if os.environ.get(SHARED_DIR_ENV):
        return Path(os.environ[SHARED_DIR_ENV])
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return tmp_path_factory.getbasetemp().parent
    return None


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """An exclusive lock between processes (released when the holder exits, even by a crash)."""
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _train_small_champion(root: Path) -> None:
    """3,000 demo customers under root/data, trained into root/mlflow.db (relative artifact
    paths), the run's TrainingResult pickled beside them."""
    data_dir = root / "data"
    write_demo(data_dir, DemoConfig(n_customers=3000, seed=11))
    path = config_path_for_data(data_dir)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        result = train_from_tables(
            load_tables(data_dir),
            feature_config_from_file(path),
            train_config_from_file(path),
            log=lambda _: None,
            tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        )
    (root / "result.pickle").write_bytes(pickle.dumps(result))


@pytest.fixture(scope="session")
def small_champion(tmp_path_factory) -> SmallChampion:
    """3,000 demo customers and a champion trained on them (MLflow in a temporary SQLite),
    trained once per test run: the first process to need it trains it into the shared folder
    while the others wait (a minute of CPU each, on CI's two cores), and each process works on a
    copy of its own."""
    shared = _shared_dir(tmp_path_factory)
    if shared is None:
        trained = tmp_path_factory.mktemp("champion-trained")
        _train_small_champion(trained)
    else:
        trained = shared / "small-champion"
        with _exclusive(shared / "small-champion.lock"):
            if not (trained / "result.pickle").exists():
                shutil.rmtree(trained, ignore_errors=True)  # a run that failed half-way
                trained.mkdir(parents=True)
                _train_small_champion(trained)
    root = tmp_path_factory.mktemp("champion")
    shutil.copytree(trained, root, dirs_exist_ok=True)
    data_dir = root / "data"
    uri = f"sqlite:///{root / 'mlflow.db'}"
    result: TrainingResult = pickle.loads((root / "result.pickle").read_bytes())
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        champion = load_champion(
            train_config_from_file(config_path_for_data(data_dir)).model_name, uri
        )
    # Tests that need a store of their own copy this one rather than train again (a minute).
    store = tmp_path_factory.mktemp("champion-store") / "store"
    shutil.copytree(trained, store, ignore=lambda d, names: ["data"] if Path(d) == trained else [])
    return SmallChampion(
        root, data_dir, uri, load_tables(data_dir), champion, result.model, result, store
    )


SERVICE_RUN_DATES = ("2024-12-01", "2024-12-08")


@dataclass
class ServiceStore:
    root: Path
    scores: Path  # two weekly partitions, of run_dates
    run_dates: tuple[str, str]
    bentoml_home: Path
    stored: object  # the champion imported into the BentoML store (bentoml.Model)
    small: SmallChampion


@pytest.fixture(scope="session")
def service_store(small_champion, tmp_path_factory) -> ServiceStore:
    """Two weekly partitions of the small champion and the champion imported into the session's
    private BentoML store (pytest_configure), once per session: every test module of the service
    shares this one."""
    from serving.batch import run_scoring
    from serving.config import ScoringConfig
    from serving.model_store import import_champion

    root = tmp_path_factory.mktemp("service")
    scores, home = root / "scores", Path(os.environ["BENTOML_HOME"])
    champion = small_champion.champion
    info = {"model_name": champion.name, "model_run_id": champion.run_id}
    for run_date in SERVICE_RUN_DATES:
        run_scoring(
            small_champion.tables, run_date, champion.model, champion.version, scores,
            model_info=info, log=lambda _: None, settings=ScoringConfig(currency="EUR"),
        )  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(small_champion.root)  # the MLflow store's relative artifact paths
        stored, imported = import_champion(champion.name, small_champion.tracking_uri)
    assert imported and Path(stored.path).is_relative_to(home), stored.path
    return ServiceStore(root, scores, SERVICE_RUN_DATES, home, stored, small_champion)
