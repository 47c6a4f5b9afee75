"""Fixtures of the gateway tests: a small policy made through the real chain on the quick testbed,
the in-process engine it runs on, and real uvicorn servers on free loopback ports."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_support import (
    VERIFIER,
    ServerThread,
    make_policy,
)

from profiling.gateway.app import Gateway, Limits


@pytest.fixture(scope="session")
def policy_file(quick_testbed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A policy exported from a profile (sample n=8 and beam n=4) of 24 quick-testbed problems."""
    return make_policy(quick_testbed, tmp_path_factory.mktemp("gateway-policy"))


@pytest.fixture(scope="session")
def engine(quick_testbed: Path):
    from profiling.gateway.loading import load_engine

    flags = {
        "model": str(quick_testbed / "policy"),
        "verifier": (VERIFIER.replace("testbed:large", str(quick_testbed / "large")),),
        "reviser": str(quick_testbed / "reviser"),
    }
    return load_engine(None, flags, threads=1)


@pytest.fixture
def served_policy(policy_file: Path, tmp_path: Path) -> Path:
    """A copy of the policy that a test may overwrite (reloads)."""
    dst = tmp_path / "policy.json"
    shutil.copyfile(policy_file, dst)
    return dst


@pytest.fixture
def server(engine, served_policy: Path) -> Iterator[ServerThread]:
    gw = Gateway(engine, str(served_policy), limits=Limits(max_request_bytes=4096, max_tokens=512))
    with ServerThread(gw) as s:
        yield s
