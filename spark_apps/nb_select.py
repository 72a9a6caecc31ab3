"""Spark application: k-fold cross-validation of a grid of Naive Bayes models over a staged model's counts."""

from __future__ import annotations

import argparse
import json

from nbknn import contract
from nbknn.common import cli
from nbknn.common.entry import run
from nbknn.common.session import build_session
from nbknn.naive_bayes.select_job import run_selection


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    cli.add_input_arguments(parser)
    parser.add_argument("--model-dir", required=True, help="staging directory of the model being built")
    parser.add_argument("--folds", type=cli.positive_int, required=True)
    parser.add_argument("--alphas", type=cli.float_list, required=True, help="comma-separated smoothings")
    parser.add_argument("--model-types", type=cli.word_list, required=True, help=f"comma-separated, of {contract.MODEL_TYPES}")
    parser.add_argument("--fit-priors", type=cli.bool_list, required=True, help="comma-separated true/false")
    parser.add_argument("--metric", choices=contract.SELECTION_METRICS, required=True)
    parser.add_argument(
        "--base-dir",
        help="incremental run: the base model the staged model was merged from (its per-fold counts are "
        "added, its documents scored again)",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    spark = build_session("nb_select")
    try:
        summary = run_selection(
            spark, cli.input_spec(args), args.model_dir, args.folds, args.alphas, args.model_types,
            args.fit_priors, args.metric, base_dir=args.base_dir,
        )
        print(json.dumps({key: summary[key] for key in ("metric", "folds", "best", "fold_documents")}, indent=2))
    finally:
        spark.stop()


if __name__ == "__main__":
    run(main)
