"""Model selection by k-fold cross-validation from counts: what it chooses, and what it costs.

    python bench/bench_selection.py [--part quality|cost|all] [--reps 2] [--scale 3]

quality (Reuters R52): the class prior and term counts jobs stage a model of R52's training split,
the selection job (``run_selection``) scores nb_train's default grid (5 folds x 10 alphas x
{multinomial, complement} x fit_prior {true, false}, macro-F1) and GridSearchCV on a
PredefinedSplit of the same folds and token counts gives its own choice. Both the chosen point and
the default (multinomial, alpha = 1, fit_prior) are then fitted on the whole training split and
scored on the test split, with scikit-learn's estimators: this pipeline's predictions equal them
(tests/spark/test_nb_predict.py), so the test scores are the published model's.

cost (20 Newsgroups resampled ``scale`` times, as bench_nb.py does): one plain training
(run_class_prior + run_term_counts, with the model report a run without selection writes)
against the selection job on the staged model, the two taking turns in every repetition. The
selection's cost is reported as (training + selection) / training, the time of a run with
selection over the time of a run without. Results: ``selection_<part>_x<scale>.json`` for cost.
"""

from __future__ import annotations

import argparse
import os
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
    timer, staged = Timer(), None
    for rep in range(reps):
        # Taking turns: training first in even repetitions, selection first in odd ones (on the
        # model the previous training staged).
        rep_dir = workdir / "ng" / f"rep{rep}"
        if rep % 2 == 1:
            with timer.time("selection"):
                select(spark, *staged)
        with timer.time("train"):
            # As nb_train without selection: the model's report at the run's alpha.
            staged = stage(spark, train_uri, rep_dir, report_alpha=1.0)
        if rep % 2 == 0:
            with timer.time("selection"):
                select(spark, *staged)
        log(f"rep {rep}: train {timer.samples['train'][-1]:.1f}s, selection {timer.samples['selection'][-1]:.1f}s")
    per_rep = [(t + s) / t for t, s in zip(timer.samples["train"], timer.samples["selection"])]
    return {
        "corpus": f"20newsgroups x{scale}",
        "train_documents": len(train),
        "grid_points": len(GRID["alphas"]) * len(GRID["model_types"]) * len(GRID["fit_priors"]),
        "folds": FOLDS,
        "timings": {name: {**t, "min_s": min(t["samples_s"]), "max_s": max(t["samples_s"])}
                    for name, t in timer.summary().items()},
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "with_selection_over_plain": ratio(timer.median("train") + timer.median("selection"), timer.median("train")),
        "with_selection_over_plain_per_rep": [round(x, 3) for x in per_rep],
        "min_max": [round(min(per_rep), 3), round(max(per_rep), 3)],
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("quality", "cost", "all"), default="all")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--scale", type=int, default=3)
    args = parser.parse_args(argv)
    spark, startup = common.start_spark("bench_selection")
    results = {"machine": common.machine(), "spark_startup_s": round(startup, 2)}
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
