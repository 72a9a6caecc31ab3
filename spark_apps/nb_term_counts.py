"""Spark application: count (class, term) pairs, number the vocabulary, write the sharded dict2."""

from __future__ import annotations

import argparse
import json

from nbknn.common import cli
from nbknn.common.entry import run
from nbknn.common.session import build_session
from nbknn.naive_bayes.term_counts import run_term_counts


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    cli.add_input_arguments(parser)
    cli.add_tokenizer_arguments(parser)
    parser.add_argument("--model-dir", required=True, help="staging directory of the model being built")
    parser.add_argument("--min-term-count", type=cli.positive_int, default=1)
    parser.add_argument("--report-alpha", type=float, help="write the model's report: top terms at this alpha")
    shards = parser.add_mutually_exclusive_group(required=True)
    shards.add_argument("--num-shards", type=cli.positive_int)
    shards.add_argument("--max-entries-per-shard", type=cli.positive_int)
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    spark = build_session("nb_term_counts")
    try:
        summary = run_term_counts(
            spark,
            cli.input_spec(args),
            args.model_dir,
            cli.tokenizer_config(args),
            min_term_count=args.min_term_count,
            num_shards=args.num_shards,
            max_entries_per_shard=args.max_entries_per_shard,
            report_alpha=args.report_alpha,
        )
        print(json.dumps(summary, indent=2, sort_keys=True))
    finally:
        spark.stop()


if __name__ == "__main__":
    run(main)
