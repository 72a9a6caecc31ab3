"""Several DAG runs, one after the other, through ``airflow dags test`` in one process.

Each run is the CLI's own command: its arguments parsed by Airflow's CLI parser and its function
called, as ``airflow dags test DAG -c CONF`` would. What one process saves over one per run: every
``airflow dags test`` process imports Airflow and, at its first task, builds Airflow's in-process
execution API (py-spy over the demo: about 4 s of CPU per process for the API, 2 s for the
imports); here the later runs reuse both. Each run still parses the DAG folder.

    python -m nbknn_local.dag_runs LOG_DIR DAG_ID=CONF_JSON [DAG_ID=CONF_JSON ...]

A run's output (Airflow's and its spark-submits') goes to ``LOG_DIR/<dag_id>.log``. Standard output
gets one JSON line when a run starts and one when it ends (its state and wall seconds); the first
failed run ends the sequence (the later DAGs read its outputs) and the exit code is 1.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path


def command(runs: dict[str, dict], log_dir: Path) -> list[str]:
    """The argument list that runs ``runs`` (DAG id -> conf), in order, with this interpreter."""
    return [sys.executable, "-m", __name__, str(log_dir), *(f"{dag_id}={json.dumps(conf)}" for dag_id, conf in runs.items())]


def parse_runs(specs: list[str]) -> list[tuple[str, dict]]:
    runs = []
    for spec in specs:
        dag_id, sep, conf = spec.partition("=")
        if not sep or not dag_id:
            raise SystemExit(f"expected DAG_ID=CONF_JSON, got {spec!r}")
        runs.append((dag_id, json.loads(conf)))
    return runs


def dags_test(dag_id: str, conf: dict) -> None:
    """``airflow dags test DAG_ID -c CONF`` in this process; raises SystemExit when the run fails."""
    from airflow.cli import cli_parser

    args = cli_parser.get_parser().parse_args(["dags", "test", dag_id, "-c", json.dumps(conf)])
    args.func(args)


def run_logged(dag_id: str, conf: dict, log_path: Path) -> bool:
    """One run with this process's standard output and error (file descriptors 1 and 2, so the
    spark-submits it starts too) sent to ``log_path``; True when it succeeded."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            dags_test(dag_id, conf)
            succeeded = True
        except SystemExit as exc:
            succeeded = exc.code in (None, 0)
            print(f"airflow dags test {dag_id}: {exc.code}", file=sys.stderr)
        except Exception:  # noqa: BLE001 -- any error fails the run, its traceback goes to its log
            traceback.print_exc()
            succeeded = False
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
    return succeeded


def report(**fields) -> None:
    print(json.dumps(fields), flush=True)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    log_dir = Path(argv[0])
    log_dir.mkdir(parents=True, exist_ok=True)
    for dag_id, conf in parse_runs(argv[1:]):
        log_path = log_dir / f"{dag_id}.log"
        report(dag_id=dag_id, event="start", log=str(log_path))
        started = time.monotonic()
        succeeded = run_logged(dag_id, conf, log_path)
        report(dag_id=dag_id, event="end", state="success" if succeeded else "failed",
               seconds=round(time.monotonic() - started, 1))
        if not succeeded:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
