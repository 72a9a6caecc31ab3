"""The newcomer's main job (`make demo`) on a reduced slice: real DAG runs, a summary worth reading."""

import json
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from PIL import Image

from helpers import REPO_ROOT, project_vectorizer

pytestmark = pytest.mark.e2e

TRAIN_DOCS, TEST_DOCS = 300, 120


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``make demo``'s script run once on a slice: (its standard output, its data root)."""
    base = tmp_path_factory.mktemp("demo")
    data_root, airflow_home = base / "data", base / "airflow_home"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "demo.py"), "--limit-train", str(TRAIN_DOCS), "--limit-test", str(TEST_DOCS),
         "--data-root", str(data_root), "--airflow-home", str(airflow_home), "--k", "3"],
        capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout, data_root


def test_demo_runs_the_pipeline_and_prints_its_summary(demo):
    out, data_root = demo
    for dag_id in ("nb_train", "nb_predict", "doc_vectors", "knn_neighbors"):
        assert f"{dag_id} succeeded in" in out
        assert re.search(rf"^   {dag_id}\s+\d+ s$", out, re.M), f"no timing line for {dag_id}"
    version = (data_root / "models" / "naive_bayes" / "LATEST").read_text().strip()
    model = json.loads((data_root / "models" / "naive_bayes" / version / "manifest.json").read_text())["model"]
    assert f"== model {version} ({model['type']}, alpha={model['alpha']}, fit_prior={model['fit_prior']})" in out
    # nb_train chose the model's parameters by cross-validation and says so.
    assert re.search(r"^   chosen among 40 grid points by 5-fold cross-validation: mean f1_macro [\d.]+", out, re.M)
    assert len(re.findall(r"^   top terms of \S+: \S+", out, re.M)) == 3
    assert len(re.findall(r"^   shard \d: +\d+ entries", out, re.M)) == 4
    # The pipeline's labels are scikit-learn's, so the two rows of numbers are the same.
    assert "same label as scikit-learn for 120 of 120 documents" in out
    ours = re.search(r"this pipeline\s+([\d.]+)\s+([\d.]+)", out).groups()
    theirs = re.search(r"scikit-learn\s+([\d.]+)\s+([\d.]+)", out).groups()
    assert ours == theirs
    assert len(re.findall(r"^   reuters-r52-test-\d+: \S+ +p=[\d.]+ \(true \S+\) \"", out, re.M)) == 5
    assert "== similar documents (broadcast mode, k=3, metric=cosine)" in out
    assert len(re.findall(r"^      \d\.\d{3} reuters-r52-test-\d+ \[", out, re.M)) == 9
    for name in ("model", "predictions", "report", "document vectors", "neighbours", "their distances"):
        assert re.search(rf"^   {name}\s+file://", out, re.M), name


def test_the_demo_report_shows_its_figures_and_pictures(demo):
    out, data_root = demo
    ours = re.search(r"this pipeline\s+([\d.]+)\s+([\d.]+)", out).groups()
    report = next((data_root / "predictions" / "naive_bayes").glob("*/report"))
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["documents"] == 120 and 0 <= metrics["accuracy"] <= 1
    assert f"{metrics['accuracy']:.4f}" == ours[0]
    with Image.open(report / "confusion_matrix.png") as picture:
        picture.verify()
        assert picture.format == "PNG"
    page = (report / "report.html").read_text()
    images = _Images()
    images.feed(page)
    assert images.sources == ["quality_history.png", "per_class_f1.png", "confusion_matrix.png"]
    for source in images.sources:
        with Image.open(report / source) as picture:
            picture.verify()
    for label in metrics["per_class"]:
        assert label in page
    # knn_neighbors' report task draws its picture too.
    with Image.open(next((data_root / "neighbors").glob("*/report/distance_by_rank.png"))) as picture:
        picture.verify()


def test_the_demo_model_is_the_point_grid_search_chooses(demo, corpus):
    """nb_train's selection=kfold through Airflow, with the default grid, folds and metric of its
    Params: the published model is GridSearchCV's choice on a PredefinedSplit of the same folds,
    and the manifest keeps every point's mean score."""
    from sklearn.model_selection import GridSearchCV, PredefinedSplit
    from sklearn.naive_bayes import ComplementNB, MultinomialNB
    from sklearn.pipeline import Pipeline

    from nbknn import contract
    from nbknn_airflow.param_schemas import NB_TRAIN_DEFAULTS

    _, data_root = demo
    docs = corpus("reuters-r52", "train", TRAIN_DOCS)
    models = data_root / "models" / "naive_bayes"
    manifest = json.loads((models / (models / "LATEST").read_text().strip() / "manifest.json").read_text())
    folds, metric = NB_TRAIN_DEFAULTS["folds"], NB_TRAIN_DEFAULTS["selection_metric"]
    estimators = {"multinomial": MultinomialNB(), "complement": ComplementNB(norm=False)}
    grid = [{"nb": [estimators[name]], "nb__alpha": NB_TRAIN_DEFAULTS["alpha_grid"],
             "nb__fit_prior": NB_TRAIN_DEFAULTS["fit_prior_grid"]} for name in NB_TRAIN_DEFAULTS["model_type_grid"]]
    X = project_vectorizer().fit_transform(d["text"] for d in docs)
    search = GridSearchCV(
        Pipeline([("nb", MultinomialNB())]), grid, scoring=metric,
        cv=PredefinedSplit([contract.fold_of(d["id"], folds) for d in docs]),
    ).fit(X, [d["label"] for d in docs])
    best = search.best_params_
    assert manifest["model"] == {
        "type": "multinomial" if isinstance(best["nb"], MultinomialNB) else "complement",
        "alpha": best["nb__alpha"],
        "fit_prior": best["nb__fit_prior"],
    }
    selection = manifest["selection"]
    assert (selection["metric"], selection["folds"], len(selection["points"])) == (metric, folds, 40)
    assert [row[f"mean_{metric}"] for row in selection["points"]] == pytest.approx(
        list(search.cv_results_["mean_test_score"]), abs=1e-12
    )


def test_the_dag_runner_reports_a_failed_run_and_stops_there(airflow_db, corpus, tmp_path):
    """The demo's runner (nbknn_local.dag_runs) on an nb_train run over max_reject_fraction: the run
    fails loudly at class_prior (the real SparkSubmitOperator and spark-submit), with the
    quarantine written so the operator can see why, no model published and no retry of bad input;
    the runner reports it failed with its log, ends the sequence there and exits with 1. (A run
    that fails at ``plan`` goes through ``airflow dags test`` in tests/reliability/test_hostile_params.py.)"""
    from helpers import latest_run_task_states, run_dag_tests, write_jsonl

    docs = corpus("reuters-r8", "train", 20)
    write_jsonl(tmp_path / "input" / "bad" / "part-0.jsonl", [*docs, *["{broken"] * 5])
    logs = tmp_path / "logs"
    over = {"input_uri": "input/bad", "max_reject_fraction": 0.01}
    result = run_dag_tests({"nb_train": over, "nb_predict": {}}, tmp_path.as_uri(), logs)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    assert [(e["dag_id"], e["event"], e.get("state")) for e in events] == [
        ("nb_train", "start", None), ("nb_train", "end", "failed")]
    log = (logs / "nb_train.log").read_text(errors="replace")
    assert "rejected 5 of 25 records (20.00%), more than max_reject_fraction 1.00%" in log, log[-5000:]
    assert not (tmp_path / "models" / "naive_bayes" / "LATEST").exists()
    assert list(tmp_path.glob("rejects/nb_train/*/part-*"))
    # Bad input is not retried: class_prior failed, and nothing after it ran.
    states = latest_run_task_states("nb_train")
    assert states[("plan", -1)] == "success" and states[("class_prior", -1)] == "failed", states
    assert all(states.get((task, -1)) in ("upstream_failed", None) for task in ("term_counts", "publish")), states
    assert not (logs / "nb_predict.log").exists()
