"""Airflow with its UI on the embedded defaults: ``make airflow`` (Ctrl-C stops it).

Runs ``airflow standalone`` (API server + UI, scheduler, DAG processor, triggerer; SQLite; local
Spark) on the repository's ``airflow_home/`` and ``data/``, lays out the demo corpus where the
DAGs' Param defaults look when it is missing, and prints the URL and the admin password.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from nbknn_local.environment import SCORING_INPUT, TRAIN_INPUT, environment, lay_out_corpus

REPO_ROOT = Path(__file__).resolve().parent.parent

PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"


# A loaded machine (two cores shared with other jobs) has taken more than 3 minutes to start it.
START_TIMEOUT_SECONDS = 600.0


def wait_until_up(port: int, process: subprocess.Popen, timeout: float = START_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"airflow standalone exited with code {process.returncode}; see the output above")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=2):
                return
        except OSError:
            time.sleep(2)
    sys.exit(f"the API server did not answer on port {port} within {timeout:.0f} s (is the port in use?)")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="127.0.0.1", help="interface the UI listens on (default: this machine only)")
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT / "data")
    parser.add_argument("--airflow-home", type=Path, default=REPO_ROOT / "airflow_home")
    args = parser.parse_args(argv)
    data_root, airflow_home = args.data_root.resolve(), args.airflow_home.resolve()
    if not (data_root / TRAIN_INPUT).exists() or not (data_root / SCORING_INPUT).exists():
        print(f"laying out the demo corpus under {data_root.as_uri()} ...", flush=True)
        lay_out_corpus(data_root, None, None)
    env = environment(data_root, airflow_home, port=args.port, host=args.host)
    # Task logs at INFO, so a failed task's log in the UI says what happened.
    env.pop("AIRFLOW__LOGGING__LOGGING_LEVEL", None)
    process = subprocess.Popen([str(Path(sys.executable).parent / "airflow"), "standalone"], env=env)
    try:
        wait_until_up(args.port, process)
        passwords = json.loads((airflow_home / PASSWORD_FILE).read_text())
        print("\n" + "=" * 72)
        print(f"Airflow UI: http://127.0.0.1:{args.port}   user: admin   password: {passwords.get('admin')}")
        print("The DAGs are live: trigger nb_train (the Param defaults point at the demo data) and")
        print("nb_predict follows when it publishes a model; doc_vectors is followed by knn_neighbors.")
        print("=" * 72 + "\n", flush=True)
        process.wait()
    except KeyboardInterrupt:
        process.terminate()
        process.wait()
    except SystemExit:
        # The API server never answered: airflow standalone must not outlive the script.
        process.terminate()
        process.wait()
        raise


if __name__ == "__main__":
    main(sys.argv[1:])
