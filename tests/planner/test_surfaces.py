"""The planner's subpackages: each states what it does and may import, and every name of its
public surface (`__all__`) resolves; the light modules stay light."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = [
    "planner.tables",
    "planner.estimate",
    "planner.optimize",
    "planner.policy",
    "planner.costs",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_resolves(name: str) -> None:
    pkg = importlib.import_module(name)
    assert pkg.__doc__ and "May import" in pkg.__doc__
    assert pkg.__all__ and len(set(pkg.__all__)) == len(pkg.__all__)
    for attr in pkg.__all__:
        value = getattr(pkg, attr)
        # A name of the surface is the library object, never a submodule of the same name.
        assert not isinstance(value, type(sys)), (name, attr)
    assert set(pkg.__all__) <= set(dir(pkg))
    with pytest.raises(AttributeError):
        pkg.no_such_name  # noqa: B018


def test_light_leaves_load_without_pandas() -> None:
    # The strategy table and the probe arithmetic are what the policy runtime needs: leaves of
    # `planner` that must not drag in pandas or pyarrow.
    code = (
        "import sys; from planner.strategies import STRATEGY_KINDS, DEPLOYABLE_SELECTS; "
        "from planner.features import FEATURES, features_from_probes, linear_proba; "
        "import planner.policy; "
        "heavy = ('pandas', 'pyarrow', 'scipy', 'sklearn'); "
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
