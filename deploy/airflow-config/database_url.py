"""The Airflow metadata DB's SQLAlchemy URL, built from its parts with each one URL-encoded.

docker-compose.yml gives Airflow ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD: python
/opt/airflow/config/database_url.py`` (this folder is mounted there): Airflow runs the command and
uses what it prints. A password pasted
raw into a URL breaks on ``@``, ``:``, ``/``, ``%`` or ``#``; encoded, any password works.

    NBKNN_DB_USER, NBKNN_DB_PASSWORD   credentials (any characters)
    NBKNN_DB_ADDRESS                   host:port of the server
    NBKNN_DB_NAME                      database name
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from urllib.parse import quote

DRIVER = "postgresql+psycopg2"


def database_url(env: Mapping[str, str]) -> str:
    missing = [name for name in ("NBKNN_DB_USER", "NBKNN_DB_PASSWORD", "NBKNN_DB_ADDRESS", "NBKNN_DB_NAME")
               if not env.get(name)]
    if missing:
        raise KeyError(f"set {', '.join(missing)}")
    user, password = quote(env["NBKNN_DB_USER"], safe=""), quote(env["NBKNN_DB_PASSWORD"], safe="")
    return f"{DRIVER}://{user}:{password}@{env['NBKNN_DB_ADDRESS']}/{quote(env['NBKNN_DB_NAME'], safe='')}"


def main() -> int:
    try:
        # No newline: Airflow uses the command's output as it is, a trailing newline included.
        sys.stdout.write(database_url(os.environ))
    except KeyError as missing:
        print(f"database_url.py: {missing.args[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
