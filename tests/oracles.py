"""Optional oracles: independent implementations the statistics are checked against (the
`oracles` extra: krippendorff, nltk, scikit-learn, statsmodels).

A test that compares against one is marked `@needs("nltk")` (the import name): when that package
is missing, only the tests that need it are skipped, each saying which package it needs; the
rest of the module still runs.
"""

from __future__ import annotations

import importlib.util

import pytest


def needs(package: str) -> pytest.MarkDecorator:
    """Skip the marked test when `package` (an import name) is not installed."""
    missing = importlib.util.find_spec(package) is None
    return pytest.mark.skipif(
        missing, reason=f"needs the {package} oracle (pip install -e '.[oracles]')"
    )
