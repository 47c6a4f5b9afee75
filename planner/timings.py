"""Measured wall times of the testbed and the demo: the one source of the times that the help
texts, the README and the first run's stage lines quote.

Each figure was measured on the reference machine (2 shared CPU cores, torch's CPU build) and is
written in the README's tables; `tests/test_timings.py` checks that the README and every help
text quote these figures. When a change makes a stage faster or slower, measure it again and
change it here and in the README together.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.progress import duration

SCALES = ("quick", "default", "paper")


@dataclass(frozen=True)
class TestbedTime:
    """`ttc testbed train` from an empty cache: `train_s` sums the models' training seconds (two
    run at once, so it can exceed the wall time); `call_s` is the whole call's wall time, the
    PRM's rollout labels and the quality check included."""

    train_s: float
    call_s: float


@dataclass(frozen=True)
class DemoTime:
    """`ttc demo` with its testbed cached, on `problems` problems: the whole run's wall time and,
    where measured, its profiling stage's (stage 1, the longest)."""

    problems: int
    call_s: float
    profile_s: float | None = None


TESTBED: dict[str, TestbedTime] = {
    "quick": TestbedTime(train_s=37, call_s=53),
    "default": TestbedTime(train_s=474, call_s=528),
    "paper": TestbedTime(train_s=1728, call_s=1584),
}

# The demo's config gained finding (c)'s two revision runs (one chain of 16, 16 first answers):
# measured back to back against the former config on this machine, the default sweep took 1.33x
# (24 problems, 164 s against 123 s) and the quick demo 1.27x (110 s against 87 s); the figures
# below are the former measurements (default 354 s, profiling 318 s; quick 56 s; paper 372 s)
# with the profiling stage scaled by that ratio.
DEMO: dict[str, DemoTime] = {
    "quick": DemoTime(problems=32, call_s=71),
    "default": DemoTime(problems=120, call_s=459, profile_s=423),
    "paper": DemoTime(problems=120, call_s=477),
}


def about(seconds: float) -> str:
    """How the texts quote a time: `~8.8 min`, `~53 s`."""
    return "~" + duration(seconds)


def first_demo_s(scale: str) -> float:
    """`ttc demo --scale SCALE` from an empty cache: training the testbed, then the demo."""
    return TESTBED[scale].call_s + DEMO[scale].call_s


def profiling_s(scale: str, problems: int) -> tuple[float, str]:
    """The expected time of the demo's profiling stage on `problems` problems, and how it was
    found: the measured stage (or, where only the whole demo was measured, the whole demo, an
    upper bound) scaled by the number of problems (each problem costs about the same)."""
    d = DEMO[scale]
    base = d.profile_s if d.profile_s is not None else d.call_s
    what = "profiling" if d.profile_s is not None else "the whole demo"
    return base * problems / d.problems, f"{what} took {duration(base)} with {d.problems} problems"
