"""How a Spark task fails: an application that refused its input or arguments (exit codes of
nbknn.contract.NOT_RETRYABLE_EXIT_CODES) fails the task at once; any other failure is retried.

Through the real operator and the provider's hook, with only ``subprocess.Popen`` replaced.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from nbknn.contract import ERROR_FILE_ENV, NOT_RETRYABLE_EXIT_CODE, NOT_RETRYABLE_EXIT_CODES
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
def submit_exits(task_build_dir, monkeypatch):
    """``submit_exits(code, lines)``: runs a Spark task whose spark-submit exits with ``code``."""
    from airflow.providers.apache.spark.hooks import spark_submit as hook_module

    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": "local[2]"}))

    def run(returncode: int, lines: list[str] = (), args: list[str] = ("--input", "file:///data/in"),
            reason: str | None = None) -> None:
        def popen(*_, env=None, **__):
            if reason is not None:
                # What the application's entry frame does on its way out (nbknn.common.entry.refuse).
                Path(env[ERROR_FILE_ENV]).write_text(reason)
                seen_error_files.append(env[ERROR_FILE_ENV])
            return FinishedSubmit(returncode, list(lines))

        monkeypatch.setattr(hook_module.subprocess, "Popen", popen)
        spark_app("class_prior", "nb_class_prior.py", list(args)).execute(context={})

    seen_error_files: list[str] = []
    run.error_files = seen_error_files

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


def test_the_applications_own_reason_comes_first_in_the_failure(submit_exits):
    reason = "nbknn: InputError: cannot read jsonl input at file:///data/in: no such path"
    with pytest.raises(AirflowFailException) as raised:
        submit_exits(65, ["...", "py4j.protocol.Py4JJavaError: 20 lines of Java"], reason=reason)
    assert str(raised.value).splitlines()[0] == reason
    assert "exit code 65" in str(raised.value).splitlines()[1]
    # The error file was the task's own, and is gone.
    (error_file,) = submit_exits.error_files
    assert not Path(error_file).exists()


def test_the_entry_frame_writes_its_refusal_to_the_error_file(tmp_path, monkeypatch, capsys):
    from nbknn.common.entry import run
    from nbknn.common.errors import ConfigError

    error_file = tmp_path / "error.txt"
    monkeypatch.setenv(ERROR_FILE_ENV, str(error_file))

    def main(argv):
        raise ConfigError(f"k must be at most 7 (got {argv[0]})")

    with pytest.raises(SystemExit) as exited:
        run(main, ["9"])
    assert exited.value.code == NOT_RETRYABLE_EXIT_CODE
    assert error_file.read_text() == "nbknn: ConfigError: k must be at most 7 (got 9)"
    assert capsys.readouterr().err.strip() == error_file.read_text()
