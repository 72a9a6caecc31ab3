"""Model selection by k-fold cross-validation from counts: what it chooses, and what it costs.

    python bench/bench_selection.py [--part quality|cost|all] [--reps 2] [--scale 3]

quality (Reuters R52): the class prior and term counts jobs stage a model of R52's training split,
the selection job (``run_selection``) scores nb_train's default grid (5 folds x 10 alphas x
{multinomial, complement} x fit_prior {true, false}, macro-F1) and GridSearchCV on a
PredefinedSplit of the same folds and token counts gives its own choice. Both the chosen point and
the default (multinomial, alpha = 1, fit_prior) are then fitted on the whole training split and
scored on the test split, with scikit-learn's estimators: this pipeline's predictions equal them
(tests/spark/test_nb_predict.py), so the test scores are the published model's.

cost (20 Newsgroups resampled ``scale`` times, as bench_nb.py does): a run without selection
against a run with it, timed as nb_train runs them (``_report_args`` in
plugins/nbknn_airflow/plans/nb_train.py). Without selection: run_class_prior + run_term_counts
with the model report at the run's alpha. With selection: run_class_prior + run_term_counts
without the report, then the selection job, which writes the report at the chosen alpha. The
two take turns in one process on the same input file (plain first in even repetitions, with
selection first in odd ones), each in its own staging folder, after one untimed run of each (the
JVM's warm-up). The selection's cost is the ratio (time with selection) / (time without), per
repetition; reported as the median of those ratios with their min and max, and the ratio of the
median times. Results: ``selection_<part>_x<scale>.json`` for cost (rendered by bench/report.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import common
from bench_nb import resampled, write_jsonl
from common import Timer, log, ratio

GRID = {
    "alphas": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0],
    "model_types": ["multinomial", "complement"],
    "fit_priors": [True, False],
}
FOLDS = 5


def stage(spark, train_uri: str, workdir: Path, report_alpha: float | None = None):
    from nbknn.inputs.documents import InputSpec
    from nbknn.inputs.tokenizer import TokenizerConfig
    from nbknn.naive_bayes.class_prior import run_class_prior
    from nbknn.naive_bayes.term_counts import run_term_counts

    spec = InputSpec(uri=train_uri)
    staging = f"{workdir.as_uri()}/staging"
    run_class_prior(spark, spec, staging, f"{workdir.as_uri()}/rejects", max_reject_fraction=0.0)
    run_term_counts(spark, spec, staging, TokenizerConfig(), num_shards=1, report_alpha=report_alpha)
    return spec, staging


def select(spark, spec, staging: str, metric: str = "f1_macro") -> dict:
    from nbknn.naive_bayes.select_job import run_selection

    return run_selection(spark, spec, staging, FOLDS, GRID["alphas"], GRID["model_types"], GRID["fit_priors"], metric)


def estimator(model_type: str, alpha: float, fit_prior: bool):
    from sklearn.naive_bayes import ComplementNB, MultinomialNB

    if model_type == "multinomial":
        return MultinomialNB(alpha=alpha, fit_prior=fit_prior)
    return ComplementNB(alpha=alpha, fit_prior=fit_prior, norm=False)


def quality(spark, workdir: Path) -> dict:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import GridSearchCV, PredefinedSplit
    from sklearn.naive_bayes import ComplementNB, MultinomialNB
    from sklearn.pipeline import Pipeline

    from nbknn import contract
    from nbknn.inputs.tokenizer import tokenize
    from nbknn_local import corpora

    train, test = corpora.documents("reuters-r52", "train"), corpora.documents("reuters-r52", "test")
    spec, staging = stage(spark, write_jsonl(train, workdir / "r52" / "train.jsonl"), workdir / "r52")
    summary = select(spark, spec, staging)
    vectorizer = CountVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None)
    X = vectorizer.fit_transform([d["text"] for d in train])
    X_test = vectorizer.transform([d["text"] for d in test])
    y, y_test = [d["label"] for d in train], [d["label"] for d in test]
    search = GridSearchCV(
        Pipeline([("nb", MultinomialNB())]),
        [{"nb": [e], "nb__alpha": GRID["alphas"], "nb__fit_prior": GRID["fit_priors"]}
         for e in (MultinomialNB(), ComplementNB(norm=False))],
        cv=PredefinedSplit([contract.fold_of(d["id"], FOLDS) for d in train]), scoring="f1_macro", refit=False,
    ).fit(X, y)
    best = search.cv_results_["params"][search.best_index_]
    sklearn_choice = {
        "model_type": "multinomial" if isinstance(best["nb"], MultinomialNB) else "complement",
        "alpha": best["nb__alpha"],
        "fit_prior": best["nb__fit_prior"],
    }
    fold_gap = max(
        abs(a - b)
        for g, row in enumerate(summary["points"])
        for f, a in enumerate(row["fold_f1_macro"])
        for b in [search.cv_results_[f"split{f}_test_score"][g]]
    )

    def test_scores(point: dict) -> dict:
        predicted = estimator(point["model_type"], point["alpha"], point["fit_prior"]).fit(X, y).predict(X_test)
        return {
            "accuracy": round(float(accuracy_score(y_test, predicted)), 4),
            "f1_macro": round(float(f1_score(y_test, predicted, average="macro")), 4),
        }

    default = {"model_type": "multinomial", "alpha": 1.0, "fit_prior": True}
    result = {
        "corpus": "reuters-r52",
        "train_documents": len(train),
        "test_documents": len(test),
        "grid": GRID,
        "folds": FOLDS,
        "metric": "f1_macro",
        "chosen": summary["best"],
        "sklearn_choice": sklearn_choice,
        "same_choice": summary["best"] == sklearn_choice,
        "max_fold_score_difference_vs_sklearn": fold_gap,
        "cv_mean_f1_macro_chosen": summary["points"][summary["best_index"]]["mean_f1_macro"],
        "test_chosen": test_scores(summary["best"]),
        "test_default": test_scores(default),
    }
    log(f"R52: chosen {result['chosen']}, scikit-learn {sklearn_choice}; test {result['test_chosen']} "
        f"vs default {result['test_default']}")
    return result


def cost(spark, workdir: Path, scale: int, reps: int) -> dict:
    from nbknn_local import corpora

    train = resampled(corpora.documents("20newsgroups", "train"), scale, seed=1)
    train_uri = write_jsonl(train, workdir / "ng" / "train.jsonl")
    timer = Timer()

    def plain(rep_dir: Path) -> None:
        with timer.time("plain"):
            # As nb_train without selection: the term counts job writes the report at the run's alpha.
            stage(spark, train_uri, rep_dir, report_alpha=1.0)

    def with_selection(rep_dir: Path) -> None:
        with timer.time("with_selection"):
            # As nb_train with selection: no report from term counts; the selection job writes it.
            with timer.time("with_selection.train"):
                staged = stage(spark, train_uri, rep_dir, report_alpha=None)
            with timer.time("with_selection.select"):
                select(spark, *staged)

    # One untimed run of each side first: the first jobs of a session pay for the JVM's warm-up
    # (class loading, code generation, JIT), which would otherwise land on the first side timed.
    stage(spark, train_uri, workdir / "ng" / "warmup", report_alpha=1.0)
    select(spark, *stage(spark, train_uri, workdir / "ng" / "warmup_selection"))
    for rep in range(reps):
        # Taking turns: plain first in even repetitions, with selection first in odd ones.
        sides = [("plain", plain), ("selection", with_selection)]
        for name, side in sides if rep % 2 == 0 else sides[::-1]:
            side(workdir / "ng" / f"rep{rep}" / name)
        log(f"rep {rep}: plain {timer.samples['plain'][-1]:.1f}s, with selection "
            f"{timer.samples['with_selection'][-1]:.1f}s (training {timer.samples['with_selection.train'][-1]:.1f}s "
            f"+ selection {timer.samples['with_selection.select'][-1]:.1f}s)")
    per_rep = [w / p for w, p in zip(timer.samples["with_selection"], timer.samples["plain"])]
    return {
        "corpus": f"20newsgroups x{scale}",
        "train_documents": len(train),
        "grid_points": len(GRID["alphas"]) * len(GRID["model_types"]) * len(GRID["fit_priors"]),
        "folds": FOLDS,
        "repetitions": reps,
        "accounting": "plain = class_prior + term_counts with the report; with selection = class_prior + "
                      "term_counts without the report + selection job (which writes the report)",
        "timings": {name: {**t, "min_s": min(t["samples_s"]), "max_s": max(t["samples_s"])}
                    for name, t in timer.summary().items()},
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "with_selection_over_plain_per_rep": [round(x, 3) for x in per_rep],
        "with_selection_over_plain": {
            "median": round(statistics.median(per_rep), 3), "min": round(min(per_rep), 3), "max": round(max(per_rep), 3),
        },
        "ratio_of_median_times": ratio(timer.median("with_selection"), timer.median("plain")),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("quality", "cost", "all"), default="all")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--scale", type=int, default=3)
    args = parser.parse_args(argv)
    spark, startup = common.start_spark("bench_selection")
    results = {"benchmark": "naive_bayes_selection", "machine": common.machine(), "spark_startup_s": round(startup, 2)}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-selection-") as tmp:
            if args.part in ("quality", "all"):
                results["quality"] = quality(spark, Path(tmp))
            if args.part in ("cost", "all"):
                results["cost"] = cost(spark, Path(tmp), args.scale, args.reps)
    finally:
        spark.stop()
    common.write_results(f"selection_{args.part}" + (f"_x{args.scale}" if args.part == "cost" else ""), results)


if __name__ == "__main__":
    main()
