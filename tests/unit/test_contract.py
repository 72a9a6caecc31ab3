"""The contract's summaries read what the applications write, and its layout matches the plans'."""

from __future__ import annotations

import dataclasses

import pytest

from nbknn import contract


def _filled(cls) -> dict:
    return {field.name: f"<{field.name}>" for field in dataclasses.fields(cls)}


@pytest.mark.parametrize("cls", [contract.KnnSummary, contract.PredictionSummary, contract.ModelRegistration])
def test_a_summary_reads_back_what_it_wrote_and_ignores_unknown_keys(cls):
    document = _filled(cls)
    summary = cls.from_dict({**document, "written_by_a_newer_version": 1})
    assert summary.to_dict() == document
    # The writer's side is strict: a key the contract does not know is a bug of the writer.
    with pytest.raises(TypeError):
        cls(**{**document, "misspelt_key": 1})


def test_knn_headline_names_recall_and_blocks_only_for_their_modes():
    document = {**_filled(contract.KnnSummary), "output": {"uri": "u", "rows": 3}, "timings_seconds": {"total": 1.5},
                "annoy": None, "blocks": {"n_blocks": 4}}
    headline = contract.KnnSummary.from_dict(document).headline("u/report/distance_by_rank.png")
    assert (headline["neighbors_uri"], headline["rows"], headline["seconds"], headline["n_blocks"]) == ("u", 3, 1.5, 4)
    assert headline["picture"] == "u/report/distance_by_rank.png"
    assert "recall_at_k" not in headline


def test_model_registration_comes_from_a_manifest_and_makes_the_asset_event():
    manifest = {"version": "v1", "num_shards": 2, "counts": {"classes": 3}, "records": {"read": 9}, "kind": "naive_bayes"}
    model = contract.ModelRegistration.from_manifest(manifest)
    assert model.asset_event("file:///m/v1") == {"version": "v1", "uri": "file:///m/v1", "num_shards": 2}
    assert (model.counts, model.records) == ({"classes": 3}, {"read": 9})


def test_layout_names_every_output_below_the_directory_a_plan_chose():
    assert contract.term_counts_shard_uri("hdfs://nn/m/v1/", 3) == "hdfs://nn/m/v1/term_counts/shard=3"
    assert contract.manifest_uri("file:///m/v1") == "file:///m/v1/manifest.json"
    assert contract.prediction_layout("file:///p/run")["scores"] == "file:///p/run/scores"
    assert contract.knn_summary_uri("file:///n/run") == "file:///n/run/report/summary.json"
