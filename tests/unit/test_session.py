"""How many cores an executor has, as the applications' session reads it from the master URL."""

from __future__ import annotations

import os

import pytest

from nbknn.common.session import executor_cores


@pytest.mark.parametrize("master, configured, cores", [
    ("local[2]", None, 2),
    ("local[4,3]", None, 4),  # local[N, maxFailures]
    ("local", None, 1),
    ("local[*]", None, os.cpu_count()),
    ("spark://127.0.0.1:7077", "3", 3),
    ("spark://127.0.0.1:7077", None, None),  # the cluster manager decides: left alone
    ("yarn", None, None),
])
def test_executor_cores_from_the_master_and_the_executor_setting(master, configured, cores):
    assert executor_cores(master, configured) == cores
