"""Run keys, model versions and HDFS path rules (checked even when the root is file://)."""

from datetime import datetime, timezone

import pytest

from nbknn_airflow import paths


def test_run_key_of_a_manual_run_id_is_a_valid_hdfs_name():
    run_id = "manual__2026-11-22T01:53:18.137847+00:00"
    key = paths.run_key(run_id)
    assert ":" not in key and "+" not in key and "/" not in key
    paths.validate_hdfs_path(f"/data/{key}")
    assert key.startswith("manual__2026-11-22T01-53-18.137847-00-00-")


def test_run_keys_differ_when_run_ids_differ_only_in_unsafe_characters():
    assert paths.run_key("run:1") != paths.run_key("run+1")


def test_run_key_is_stable_for_the_same_run():
    assert paths.run_key("scheduled__2026-01-01T02:00:00+00:00") == paths.run_key(
        "scheduled__2026-01-01T02:00:00+00:00"
    )


def test_model_version_sorts_by_time_and_is_hdfs_safe():
    early = paths.model_version(datetime(2026, 1, 1, 2, 0, tzinfo=timezone.utc), "b")
    late = paths.model_version(datetime(2026, 1, 2, 2, 0, tzinfo=timezone.utc), "a")
    assert early < late
    assert early.startswith("20260101T020000Z-")
    paths.validate_hdfs_path(f"/{early}")


@pytest.mark.parametrize(
    "path, message",
    [
        ("relative/path", "must be absolute"),
        ("/data/../etc", r"'\.' or '\.\.'"),
        ("/data/./x", r"'\.' or '\.\.'"),
        ("/data/manual__2026-01-01T00:00:00", "holds ':'"),
        ("/data/a\nb", "control characters"),
    ],
)
def test_paths_hdfs_would_refuse_are_refused(path, message):
    with pytest.raises(paths.PathError, match=message):
        paths.validate_hdfs_path(path)


def test_join_validates_each_part():
    assert paths.join("hdfs://nn:8020/data/", "/models/", "v1") == "hdfs://nn:8020/data/models/v1"
    with pytest.raises(paths.PathError):
        paths.join("file:///data", "a:b")


ROOTS = ["file:///srv/data", "hdfs://nn:8020/warehouse"]


@pytest.mark.parametrize(
    "given, expected",
    [
        ("input/day=1", "file:///srv/data/input/day=1"),
        ("file:///srv/data/input/x.jsonl", "file:///srv/data/input/x.jsonl"),
        ("hdfs://nn:8020/warehouse/docs/", "hdfs://nn:8020/warehouse/docs"),
    ],
)
def test_inputs_inside_the_roots_are_accepted(given, expected):
    assert paths.resolve_input(given, ROOTS) == expected


@pytest.mark.parametrize(
    "given, message",
    [
        ("", "must not be empty"),
        ("../outside", r"'\.' or '\.\.'"),
        ("file:///srv/data/../../etc/passwd", r"'\.' or '\.\.'"),
        ("file:///srv/database/x", "outside the allowed roots"),
        ("file:///etc/passwd", "outside the allowed roots"),
        ("hdfs://other:8020/warehouse/x", "outside the allowed roots"),
        ("http://example.invalid/x", "scheme must be one of"),
        ("input; rm -rf /", "characters that no data path needs"),
        ("input/$(whoami)", "characters that no data path needs"),
    ],
)
def test_inputs_outside_the_roots_or_hostile_are_refused(given, message):
    with pytest.raises(paths.PathError, match=message):
        paths.resolve_input(given, ROOTS)
