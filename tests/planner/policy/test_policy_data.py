"""The policy tests' data factory (tests/support/policy_data.py) is seeded."""

from __future__ import annotations

import pandas as pd
from policy_data import make_samples


def test_make_samples_is_seeded() -> None:
    a, b = make_samples(20, seed=3), make_samples(20, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(make_samples(20, seed=4))
    assert set(a["strategy"]) == {"sample", "beam"}
