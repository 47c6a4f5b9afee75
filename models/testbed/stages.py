"""The stages of a testbed run. Each is
`fn(settings, work_dir, stage_dir, dirs, progress) -> record`: it writes its model (if any) to
``stage_dir/model`` and may checkpoint into `work_dir`; `dirs` maps the names of finished stages to
their directories."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from models.testbed.checkpoints import save_model
from models.testbed.modeling import pretrain
from models.testbed.prm import train_prm
from models.testbed.quality import manifest_quality
from models.testbed.reviser import train_reviser
from models.testbed.settings import TestbedSettings

StageFn = Callable[[TestbedSettings, Path, Path, dict[str, Path], bool], dict]

# The larger LM pretrains in a child process on one core while the main process trains the policy,
# the reviser and the PRM's rollout labels on the other; that work ends at about this share of the
# larger LM's steps (default: policy 198 + reviser 112 + labels 40 s against about 510 s for the
# larger LM alone; paper: the same against about 1,260 s), and from then on the larger LM takes
# both cores.
# A fixed step, so timing never changes what is computed (and the weights are the same with one
# thread or two); late rather than early, as three busy threads on two cores stall each other.
LARGE_TWO_THREADS_FROM = {"default": 0.78, "paper": 0.33}


def _late_threads(settings: TestbedSettings, steps: int) -> tuple[int, int] | None:
    if settings.quick or "TTC_TESTBED_THREADS" in os.environ:
        return None
    return int(steps * LARGE_TWO_THREADS_FROM[settings.scale]), max(1, min(2, os.cpu_count() or 1))


def _pretrain_stage(which: str) -> StageFn:
    def run(
        settings: TestbedSettings, work: Path, out: Path, dirs: dict[str, Path], progress: bool
    ) -> dict:
        t0 = time.perf_counter()
        if which == "policy":
            spec, train = settings.policy, settings.pretrain
        else:
            spec, train = settings.large, settings.large_pretrain
        # Same data stream (seed) and steps for both models: the larger LM sees exactly the
        # policy's tokens.
        late = _late_threads(settings, train.steps) if which == "large" else None
        model, record = pretrain(
            spec,
            train,
            settings.seed,
            work / "ckpt.pt",
            desc=f"{which} LM",
            progress=progress,
            threads_from=late,
            levels=settings.levels,
        )
        save_model(model, out / "model")
        record["stage_seconds"] = round(time.perf_counter() - t0, 2)
        return record

    return run


def _quality_stage(
    settings: TestbedSettings, work: Path, out: Path, dirs: dict[str, Path], progress: bool
) -> dict:
    t0 = time.perf_counter()
    quality = manifest_quality(settings, dirs, progress)
    return {"quality": quality, "stage_seconds": round(time.perf_counter() - t0, 2)}


STAGES: dict[str, StageFn] = {
    "policy": _pretrain_stage("policy"),
    "large": _pretrain_stage("large"),
    "prm": train_prm,
    "reviser": train_reviser,
    "quality": _quality_stage,
}
