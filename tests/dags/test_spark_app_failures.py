"""How a Spark task fails: an application that refused its input or arguments (exit codes of
nbknn.contract.NOT_RETRYABLE_EXIT_CODES) fails the task at once; any other failure is retried.

Through the real operator and the provider's hook, with only ``subprocess.Popen`` replaced.
"""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from nbknn.contract import NOT_RETRYABLE_EXIT_CODES
from nbknn_airflow.spark_submit import spark_app, spark_submit_exit_code


class FinishedSubmit:
    """A spark-submit process that printed ``lines`` and exited with ``returncode``."""

    def __init__(self, returncode: int, lines: list[str]):
        self.returncode = returncode
        self.stdout = iter(line + "\n" for line in lines)

    def wait(self) -> int:
        return self.returncode

    def poll(self) -> int:
        return self.returncode


@pytest.fixture
def submit_exits(tmp_path, monkeypatch):
    """``submit_exits(code, lines)``: runs a Spark task whose spark-submit exits with ``code``."""
    from airflow.providers.apache.spark.hooks import spark_submit as hook_module

    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": "local[2]"}))
    monkeypatch.setenv("NBKNN_BUILD_DIR", str(tmp_path / "build"))

    def run(returncode: int, lines: list[str] = (), args: list[str] = ("--input", "file:///data/in")) -> None:
        monkeypatch.setattr(
            hook_module.subprocess, "Popen", lambda *a, **kw: FinishedSubmit(returncode, list(lines))
        )
        spark_app("class_prior", "nb_class_prior.py", list(args)).execute(context={})

    return run


@pytest.mark.parametrize("exit_code", sorted(NOT_RETRYABLE_EXIT_CODES))
def test_refused_input_or_arguments_fail_the_task_without_retry(submit_exits, exit_code):
    with pytest.raises(AirflowFailException, match=rf"exit code {exit_code}\); retrying would not help"):
        submit_exits(exit_code, ["nbknn: rejected 5 of 25 records"])


@pytest.mark.parametrize("exit_code", [1, 137, -9])
def test_other_failures_are_retried(submit_exits, exit_code):
    with pytest.raises(AirflowException) as raised:
        submit_exits(exit_code, ["java.lang.OutOfMemoryError"])
    assert not isinstance(raised.value, AirflowFailException)


def test_the_exit_code_is_not_taken_from_an_argument_or_an_output_line(submit_exits):
    look_alike = "Error code is: 65."
    with pytest.raises(AirflowException) as raised:
        submit_exits(1, [look_alike, "Last spark-submit output:", look_alike], ["--lineage", look_alike])
    assert not isinstance(raised.value, AirflowFailException)
    assert spark_submit_exit_code(raised.value) == 1


def test_a_successful_submit_passes(submit_exits):
    submit_exits(0, ["done"])


def test_failures_that_are_not_a_submit_exit_have_no_exit_code():
    assert spark_submit_exit_code(AirflowException("No driver id is known")) is None
    assert spark_submit_exit_code(AirflowException("Error code is: 2.")) is None
