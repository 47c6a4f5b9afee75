"""The wheel: what a capacity planner gets from `pip install ttc-planner` (no extras, no checkout).

The shipped data (hardware profiles, model specs, reference run configs, the policy JSON Schema)
must be inside the installed package, and the light commands must work from any directory with
neither torch nor the source tree in reach.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_PACKAGES = ("planner", "profiling", "models", "reports")


def _tree_packages() -> set[str]:
    """Every folder of the source tree that is a package, by its installed name; data/ and its
    folders of data files (namespace packages, no __init__.py) install as `planner.data.*`."""
    found = {"planner.data"} if (ROOT / "data" / "__init__.py").is_file() else set()
    for folder in (ROOT / "data").iterdir():
        if folder.is_dir() and any(p.is_file() for p in folder.iterdir()):
            found.add(f"planner.data.{folder.name}")
    for top in TOP_PACKAGES:
        for init in (ROOT / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(ROOT).parts))
    return found


def test_pyproject_lists_every_package_of_the_tree() -> None:
    # The package list is written out (data/ maps to planner.data), so a new subpackage that is
    # not listed would silently be missing from the wheel.
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]
    assert set(conf["packages"]) == _tree_packages()
    assert conf["package-dir"] == {"planner.data": "data"}


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, (
        f"{' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
    )
    return res.stdout


def _source_copy(base: Path) -> Path:
    """The files git tracks or would track, copied to `base/src` (no build leftovers)."""
    src = base / "src"
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for rel in filter(None, files.decode().split("\0")):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes((ROOT / rel).read_bytes())
    return src


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built as pip builds it (an isolated build environment with the setuptools that
    pyproject.toml requires) with every warning an error. PYTHONWARNINGS reaches the build
    backend, which runs in pip's subprocess (`python -W error -m pip` would not): a deprecated
    `project.license` table or a data folder missing from `packages` fails the build."""
    base = tmp_path_factory.mktemp("wheel")
    src = _source_copy(base)
    dist = base / "dist"
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(src)],
        cwd=base,
        env=env,
    )
    (built,) = dist.glob("ttc_planner-*.whl")
    return built


def test_wheel_builds_without_setuptools_warnings_and_ships_its_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (
        "planner/data/hardware/h100-sxm.json",
        "planner/data/models/llama-3.1-8b.json",
        "planner/data/configs/testbed.toml",
        "planner/data/configs/demo.toml",
        "planner/policy/schema.json",
        "ttc_planner-0.1.0.dist-info/licenses/LICENSE",
    ):
        assert shipped in names, f"{shipped} is not in {wheel.name}"
    meta = zipfile.ZipFile(wheel).read("ttc_planner-0.1.0.dist-info/METADATA").decode()
    # PEP 639: the SPDX expression, not the deprecated free-text License field.
    assert "License-Expression: MIT" in meta
    assert "License-File: LICENSE" in meta


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel and no extras."""
    base = tmp_path_factory.mktemp("venv")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=base)
    _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], cwd=base)
    return venv


def _outside_env() -> dict[str, str]:
    # Nothing of the checkout on the path: the installed package alone must do.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return env


@pytest.mark.slow
def test_wheel_ships_its_data_and_runs_outside_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    ttc = str(installed / "bin" / "ttc")
    env = _outside_env()
    listed = _run([ttc, "cost", "--list-hardware"], cwd=tmp_path, env=env)
    assert "h100-sxm" in listed and "a100-80gb" in listed
    cost = _run(
        [
            ttc,
            "cost",
            "--model",
            "llama-3.1-8b",
            "--hardware",
            "h100-sxm",
            "--budget",
            "16",
            "--prompt-tokens",
            "300",
            "--gen-tokens",
            "400",
        ],
        cwd=tmp_path,
        env=env,
    )
    assert "llama-3.1-8b" in cost and "h100-sxm" in cost
    assert "ttc demo --quick" in _run([ttc, "demo", "--help"], cwd=tmp_path, env=env)
    # The demo's reference config is read from the installed package, not from a checkout.
    probe = (
        "from planner.data import shipped_dir; import planner; "
        "p = shipped_dir('configs') / 'testbed.toml'; "
        "assert p.is_file() and 'site-packages' in str(p), p; "
        "assert 'site-packages' in planner.__file__, planner.__file__; print('ok')"
    )
    assert (
        _run([str(installed / "bin" / "python"), "-c", probe], cwd=tmp_path, env=env).strip()
        == "ok"
    )


@pytest.mark.slow
def test_policy_loads_without_torch(installed: Path, tmp_path: Path) -> None:
    code = (
        "import importlib.util, sys; import planner.policy; "
        "assert importlib.util.find_spec('torch') is None, 'torch is installed'; "
        "assert 'torch' not in sys.modules; "
        "from planner.policy import Policy; print(Policy.__name__)"
    )
    out = _run([str(installed / "bin" / "python"), "-c", code], cwd=tmp_path, env=_outside_env())
    assert out.strip() == "Policy"
