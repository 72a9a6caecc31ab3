"""Where the tables of a Naive Bayes model live inside its model directory.

The model directory itself (``{root}/models/naive_bayes/<version>``) is chosen by the Airflow
``plan`` task; this module owns the layout below it.
"""

from __future__ import annotations

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT_VERSION = 1


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def classes_uri(model_dir: str) -> str:
    return _join(model_dir, "classes")


def vocabulary_uri(model_dir: str) -> str:
    return _join(model_dir, "vocabulary")


def term_counts_uri(model_dir: str) -> str:
    return _join(model_dir, "term_counts")


def shard_uri(model_dir: str, shard: int) -> str:
    return _join(term_counts_uri(model_dir), f"shard={shard}")


def manifest_uri(model_dir: str) -> str:
    return _join(model_dir, MANIFEST_NAME)


def work_uri(model_dir: str, name: str) -> str:
    """Scratch space of the training jobs; removed before the model is published."""
    return _join(model_dir, "_work", name)
