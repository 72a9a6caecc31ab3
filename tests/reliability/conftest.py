"""Reliability tests: every test of this folder reports its figures (trials, kills, inputs, records
lost) through the ``figures`` fixture. They are printed, stored as build/reliability/<test>.json and
attached to the test report (``record_property``), from which tests/conftest.py lists them at the
end of the pytest run (also from the xdist workers)."""

from __future__ import annotations

import json

import pytest

from reliability_support import write_figures


class Figures(dict):
    """A test's figures; ``show()`` prints them at once (also shown by pytest on a failure)."""

    def show(self, what: str = "") -> None:
        print(f"[reliability] {what or 'figures'}: {json.dumps(self, sort_keys=True, default=str)}", flush=True)


@pytest.fixture
def figures(request, record_property):
    name = request.node.name.replace("/", "_")
    found = Figures()
    yield found
    path = write_figures(name, dict(found))
    for key, value in found.items():
        record_property(key, value)
    found.show(f"{name} (stored in {path})")
