"""DAG integrity: every DAG file imports cleanly, and follows the house conventions."""

from pathlib import Path

import pytest

from helpers import REPO_ROOT

DAG_FILES = sorted((REPO_ROOT / "dags").glob("*.py"))


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags"))


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=[path.name for path in DAG_FILES])
def test_dag_file_imports_without_errors(dagbag, dag_file: Path):
    assert str(dag_file) not in dagbag.import_errors, dagbag.import_errors.get(str(dag_file))
    assert any(dag.fileloc == str(dag_file) for dag in dagbag.dags.values()), f"no DAG defined in {dag_file.name}"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=[path.name for path in DAG_FILES])
def test_dag_files_keep_heavy_imports_out_of_parse_time(dag_file: Path):
    source = dag_file.read_text()
    top_level = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    for heavy in ("pyspark", "pandas", "numpy", "sklearn", "nbknn."):
        assert not any(heavy in line for line in top_level), f"{dag_file.name} imports {heavy} at parse time"
    # Of the Spark library, only the contract (no pyspark, no numpy) is imported at parse time.
    library = [line for line in top_level if line.startswith(("from nbknn ", "import nbknn"))]
    assert all(line == "from nbknn import contract" for line in library), library


def test_every_dag_follows_the_conventions(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.doc_md and len(dag.doc_md) > 200, f"{dag_id} lacks doc_md"
        assert "nbknn" in dag.tags, dag_id
        assert dag.catchup is False, dag_id
        for name in dag.params.keys():
            assert dag.params.get_param(name).description, f"{dag_id}.{name} has no description"
        for task in dag.tasks:
            assert task.execution_timeout is not None, f"{dag_id}.{task.task_id} has no execution_timeout"
