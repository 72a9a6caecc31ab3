"""Spark application: the k nearest neighbours of every vector (exact broadcast/blocked, or annoy)."""

from __future__ import annotations

import argparse
import json
import logging

from nbknn.common import cli
from nbknn.common.entry import run
from nbknn.common.session import build_session
from nbknn.contract import DEFAULT_MAX_RECORD_BYTES, KNN_MODES, VECTOR_FORMATS
from nbknn.inputs.vectors import VectorSpec
from nbknn.knn.job import KnnOptions, run_knn
from nbknn.knn.topk import SUPPORTED_METRICS

DEFAULTS = KnnOptions()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    group = parser.add_argument_group("input")
    group.add_argument("--input", required=True, help="URI of the reference vectors (a file or a directory)")
    group.add_argument("--queries", default=None, help="URI of separate query vectors (default: self-join)")
    group.add_argument("--format", default="jsonl", choices=VECTOR_FORMATS, help="format of the input (and queries)")
    group.add_argument("--id-column", default="id")
    group.add_argument("--vector-column", default="vector")
    group.add_argument("--max-record-bytes", type=cli.positive_int, default=DEFAULT_MAX_RECORD_BYTES)
    group.add_argument("--dim", type=cli.positive_int, default=None,
                       help="dimension of the vectors (default: the most common length)")
    cli.add_reject_arguments(parser)
    knn = parser.add_argument_group("neighbours")
    knn.add_argument("--k", type=cli.positive_int, default=DEFAULTS.k)
    knn.add_argument("--metric", default=DEFAULTS.metric, choices=sorted(SUPPORTED_METRICS))
    knn.add_argument("--mode", default=DEFAULTS.mode, choices=KNN_MODES)
    knn.add_argument("--exclude-self", default=DEFAULTS.exclude_self, action=argparse.BooleanOptionalAction,
                     help="leave out the reference vector whose id is the query's")
    knn.add_argument("--block-bytes-budget", type=cli.positive_int, default=DEFAULTS.block_bytes_budget)
    knn.add_argument("--block-rows", type=cli.positive_int, default=None,
                     help="rows per reference block (overrides the size derived from the budget)")
    knn.add_argument("--broadcast-max-bytes", type=cli.positive_int, default=DEFAULTS.broadcast_max_bytes)
    knn.add_argument("--query-chunk-rows", type=cli.positive_int, default=DEFAULTS.query_chunk_rows)
    knn.add_argument("--annoy-trees", type=cli.positive_int, default=DEFAULTS.annoy_trees)
    knn.add_argument("--annoy-search-k", type=int, default=DEFAULTS.annoy_search_k)
    knn.add_argument("--annoy-seed", type=int, default=DEFAULTS.annoy_seed)
    knn.add_argument("--recall-sample", type=cli.positive_int, default=DEFAULTS.recall_sample)
    parser.add_argument("--output-dir", required=True, help="run directory: neighbors/ and report/ go here")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def spec(uri: str) -> VectorSpec:
        return VectorSpec(uri=uri, format=args.format, id_column=args.id_column,
                          vector_column=args.vector_column, max_record_bytes=args.max_record_bytes)

    options = KnnOptions(
        k=args.k, metric=args.metric, exclude_self=args.exclude_self, mode=args.mode,
        block_bytes_budget=args.block_bytes_budget, broadcast_max_bytes=args.broadcast_max_bytes,
        query_chunk_rows=args.query_chunk_rows, block_rows=args.block_rows, annoy_trees=args.annoy_trees,
        annoy_search_k=args.annoy_search_k, annoy_seed=args.annoy_seed, recall_sample=args.recall_sample,
    )
    spark = build_session("knn_neighbors", whole_executor_tasks=True, knn_kernel=True)
    try:
        summary = run_knn(
            spark, spec(args.input), args.output_dir, args.rejects, options,
            query_spec=spec(args.queries) if args.queries else None,
            max_reject_fraction=args.max_reject_fraction, dim=args.dim,
        )
        print(json.dumps(summary, indent=2, sort_keys=True))
    finally:
        spark.stop()


if __name__ == "__main__":
    run(main)
