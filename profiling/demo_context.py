"""What `ttc demo` writes for the report beside the tables: the run's context.

- `hardware/this-machine.json`: this CPU as `ttc calibrate` measures it (one thread, as the sweep
  runs), once per run directory; being measured, it differs between two runs of the same inputs
  (the report's provenance says so);
- `model.json`: the policy model's shapes and parameter count as a model data row (what the cost
  figure needs), so the run directory is self-contained and holds no path of this machine;
- `report.json`: the report's settings (M, R values, hardware, SLO); no wall time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from planner.costs.modelspec import read_hf_config
from planner.tables import atomic_write_text, read_samples

RATIOS = (0.16, 0.79, 22.0)
SLO_S = 10.0
CPU_PROFILE = "hardware/this-machine.json"


def dumps(doc: Any) -> str:
    """JSON as the demo writes it: sorted keys, two-space indent, numpy values made plain."""
    return json.dumps(doc, sort_keys=True, indent=2, allow_nan=False, default=_plain) + "\n"


def _plain(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def write_report_context(out: Path, model_dir: Path, calibrate: bool) -> float:
    """Write `model.json`, the CPU profile (when `calibrate`) and `report.json` into the run
    directory `out`; returns M, the larger LM's parameter count over the policy's."""
    policy_params = _params(out / "samples")
    large_params = _params(out / "large" / "samples")
    m = large_params / policy_params if policy_params else float("nan")
    context: dict[str, Any] = {
        "model_multiplier": round(m, 4),
        "ratios": list(RATIOS),
        "model": _write_model_row(model_dir, out),
        "hardware": ["h100-sxm"],
        "slo_s": SLO_S,
    }
    if calibrate:
        context["cpu_hardware"] = _calibrate(out)
    atomic_write_text(out / "report.json", dumps(context))
    return m


def _calibrate(out: Path) -> str:
    """This CPU's profile (one thread, as the sweep runs), measured once per run directory."""
    from planner.costs import hardware_from_json
    from profiling.calibrate import calibrate

    if not (out / CPU_PROFILE).is_file():
        doc = calibrate(name="this-machine", size=512, mbytes=64, repeats=3, threads=1)
        (out / CPU_PROFILE).parent.mkdir(parents=True, exist_ok=True)
        hardware_from_json(doc, str(out / CPU_PROFILE))  # validate before writing
        atomic_write_text(out / CPU_PROFILE, dumps(doc))
    return CPU_PROFILE


def _write_model_row(model_dir: Path, out: Path) -> str:
    """`out/model.json`: the served model as a data row (`ttc cost --model` reads it), written
    from its config.json and safetensors headers; returns its path relative to `out`."""
    spec = read_hf_config(model_dir, name="testbed-policy")
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    row = {
        "name": spec.name,
        "config_source": "config.json of the testbed's policy (ttc testbed train)",
        "n_params": {"value": spec.n_params, "source": "safetensors headers of the checkpoint"},
        "config": config,
    }
    atomic_write_text(out / "model.json", dumps(row))
    return "model.json"


def _params(samples_dir: Path) -> float:
    _, meta = read_samples(samples_dir)
    return float(meta.get("model_params") or 0.0)
