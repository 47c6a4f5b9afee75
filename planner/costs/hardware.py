"""Hardware profiles as data: one `HardwareSpec` per accelerator, loaded from the shipped
`data/hardware/*.json` (package `planner.data`).

Each JSON file holds every numeric field as `{"value": ..., "source": "..."}` so that a planner's
number can always be traced to a datasheet, a reference table or a measurement (`ttc calibrate`
writes the same format for the machine it runs on). Units are in the field names.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planner.data import shipped_dir, shipped_names
from planner.errors import PlannerError

# Numeric fields of a profile; each must be given with its source.
NUMERIC_FIELDS = (
    "peak_flops_per_s",
    "hbm_bytes_per_s",
    "hbm_bytes",
    "usd_per_hour",
    "flops_efficiency",
    "bandwidth_efficiency",
    "step_overhead_s",
    "layer_overhead_s",
    "seq_overhead_s",
    "token_overhead_s",
    "attn_overhead_s",
    "prefill_attn_overhead_s",
)
# Optional fields and their defaults (with the source recorded when the file leaves them out).
_DEFAULTS = {
    "flops_efficiency": (0.7, "default: llm-analysis uses about 0.7 of peak FLOPs"),
    "bandwidth_efficiency": (0.9, "default: llm-analysis uses about 0.9 of peak bandwidth"),
    "step_overhead_s": (0.0, "default: no fixed per-forward overhead"),
    "layer_overhead_s": (0.0, "default: no per-layer launch overhead"),
    "seq_overhead_s": (0.0, "default: no per-sequence overhead"),
    "token_overhead_s": (0.0, "default: no per-token overhead in prefill"),
    "attn_overhead_s": (0.0, "default: attention inside the roofline (decode)"),
    "prefill_attn_overhead_s": (0.0, "default: attention inside the roofline (prefill)"),
    "usd_per_hour": (0.0, "default: no price given"),
}


@dataclass(frozen=True)
class HardwareSpec:
    """One accelerator (or this machine's CPU, once calibrated).

    peak_flops_per_s: dense peak of the dtype used for serving (FLOP/s).
    hbm_bytes_per_s: peak memory bandwidth (bytes/s).
    hbm_bytes: memory capacity per device (bytes).
    usd_per_hour: rental price of one device ($/h).
    flops_efficiency, bandwidth_efficiency: the fractions of the peaks that real kernels reach
        (llm-analysis' knobs; about 0.7 and 0.9 on GPUs; 1.0 for a calibrated profile, whose
        peaks are already measured achievable rates).
    step_overhead_s: fixed seconds per forward call (framework overhead), added to every prefill
        and decode step; 0 for GPU serving engines, measured by calibration on CPU.
    layer_overhead_s: seconds of overhead per transformer layer per forward call (eager-mode
        module and kernel launches).
    seq_overhead_s: seconds per sequence (batch row) per forward call outside the roofline
        (sampling, softmax over the vocabulary, tiny-matrix inefficiency on CPU). The per-call
        overhead is step + n_layers · layer + rows · seq.
    token_overhead_s: seconds per fed token per layer in a prefill (scoring) call outside the
        roofline (elementwise work on activations: norms, rotary, activation functions).
    attn_overhead_s: seconds per attention score per layer in a decode step (one per row and
        cached token: rows · context), outside the roofline (masked attention on CPU).
    prefill_attn_overhead_s: the same per attention score of a prefill call (rows · width² for a
        padded batch). The three are 0 on GPU profiles and measured by `ttc calibrate` on CPU.
    sources: the source of each numeric field.
    """

    name: str
    peak_flops_per_s: float
    hbm_bytes_per_s: float
    hbm_bytes: float
    usd_per_hour: float = 0.0
    flops_efficiency: float = 0.7
    bandwidth_efficiency: float = 0.9
    step_overhead_s: float = 0.0
    layer_overhead_s: float = 0.0
    seq_overhead_s: float = 0.0
    token_overhead_s: float = 0.0
    attn_overhead_s: float = 0.0
    prefill_attn_overhead_s: float = 0.0
    description: str = ""
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("hardware name must not be empty")
        for f in ("peak_flops_per_s", "hbm_bytes_per_s", "hbm_bytes"):
            v = getattr(self, f)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(
                    f"hardware {self.name!r}: {f} must be a positive number, got {v!r}"
                )
        for f in ("flops_efficiency", "bandwidth_efficiency"):
            v = getattr(self, f)
            if not (isinstance(v, int | float) and 0 < v <= 1):
                raise ValueError(f"hardware {self.name!r}: {f} must be in (0, 1], got {v!r}")
        for f in (
            "usd_per_hour",
            "step_overhead_s",
            "layer_overhead_s",
            "seq_overhead_s",
            "token_overhead_s",
            "attn_overhead_s",
            "prefill_attn_overhead_s",
        ):
            v = getattr(self, f)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ValueError(f"hardware {self.name!r}: {f} must be >= 0, got {v!r}")

    @property
    def effective_flops_per_s(self) -> float:
        return self.peak_flops_per_s * self.flops_efficiency

    @property
    def effective_bytes_per_s(self) -> float:
        return self.hbm_bytes_per_s * self.bandwidth_efficiency

    @property
    def ridge_flops_per_byte(self) -> float:
        """Arithmetic intensity above which a kernel is compute-bound (roofline ridge point)."""
        return self.effective_flops_per_s / self.effective_bytes_per_s

    def with_overrides(self, **kwargs: Any) -> HardwareSpec:
        """A copy with some values replaced (e.g. a negotiated price); sources say so."""
        values = {f: getattr(self, f) for f in (*NUMERIC_FIELDS, "name", "description")}
        sources = dict(self.sources)
        for k, v in kwargs.items():
            if v is None:
                continue
            if k not in values:
                raise PlannerError(f"unknown hardware field {k!r}")
            values[k] = v
            sources[k] = "overridden by the user"
        try:
            return HardwareSpec(**values, sources=sources)
        except ValueError as exc:
            raise PlannerError(str(exc)) from None

    def to_json(self) -> dict[str, Any]:
        """The data-file form: every numeric value with its source."""
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        for f in NUMERIC_FIELDS:
            out[f] = {"value": getattr(self, f), "source": self.sources.get(f, "")}
        return out


def hardware_from_json(doc: Any, source: str) -> HardwareSpec:
    """Build a spec from the data-file form; raise PlannerError naming the file and field."""
    if not isinstance(doc, dict):
        raise PlannerError(f"{source}: a hardware profile must be a JSON object")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise PlannerError(f"{source}: field 'name' must be a non-empty string")
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    for f in NUMERIC_FIELDS:
        if f not in doc:
            if f in _DEFAULTS:
                values[f], sources[f] = _DEFAULTS[f]
                continue
            raise PlannerError(
                f'{source}: missing field \'{f}\' (each value as {{"value", "source"}})'
            )
        entry = doc[f]
        if not (
            isinstance(entry, dict) and "value" in entry and isinstance(entry.get("source"), str)
        ):
            raise PlannerError(
                f'{source}: field \'{f}\' must be {{"value": number, "source": text}}'
            )
        v = entry["value"]
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise PlannerError(f"{source}: field '{f}' value must be a number, got {v!r}")
        values[f] = float(v)
        sources[f] = entry["source"]
    try:
        return HardwareSpec(
            name=name, description=str(doc.get("description", "")), sources=sources, **values
        )
    except ValueError as exc:
        raise PlannerError(f"{source}: {exc}") from None


def known_hardware() -> list[str]:
    """Names of the shipped profiles (file stems in data/hardware)."""
    return shipped_names("hardware", ".json")


def load_hardware(name_or_path: str | os.PathLike[str]) -> HardwareSpec:
    """Load a shipped profile by name (`h100-sxm`) or any profile JSON by path."""
    text = str(name_or_path)
    p = Path(text)
    if p.suffix == ".json" or p.exists():
        if not p.is_file():
            raise PlannerError(f"{p}: hardware profile file not found")
        source = str(p)
    else:
        p = shipped_dir("hardware") / f"{text.lower()}.json"
        if not p.is_file():
            raise PlannerError(
                f"unknown hardware {text!r}; known: {', '.join(known_hardware())} "
                "(or give the path of a profile JSON, e.g. one written by `ttc calibrate`)"
            )
        source = str(p)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PlannerError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return hardware_from_json(doc, source)
