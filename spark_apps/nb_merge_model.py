"""Spark application: fold the counts of a new partition (a delta model) into a published model."""

from __future__ import annotations

import argparse
import json

from nbknn.common import cli
from nbknn.common.entry import run
from nbknn.common.session import build_session
from nbknn.naive_bayes.merge import run_merge_model


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-dir", required=True, help="published model the new counts are added to")
    parser.add_argument("--delta-dir", required=True, help="model directory of the new partition's counts")
    parser.add_argument("--model-dir", required=True, help="staging directory of the merged model")
    parser.add_argument("--report-alpha", type=float, help="write the model's report: top terms at this alpha")
    shards = parser.add_mutually_exclusive_group(required=True)
    shards.add_argument("--num-shards", type=cli.positive_int)
    shards.add_argument("--max-entries-per-shard", type=cli.positive_int)
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    spark = build_session("nb_merge_model")
    try:
        summary = run_merge_model(
            spark,
            base_dir=args.base_dir,
            delta_dir=args.delta_dir,
            model_dir=args.model_dir,
            num_shards=args.num_shards,
            max_entries_per_shard=args.max_entries_per_shard,
            report_alpha=args.report_alpha,
        )
        print(json.dumps(summary, indent=2, sort_keys=True))
    finally:
        spark.stop()


if __name__ == "__main__":
    run(main)
