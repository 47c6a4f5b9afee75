"""Progress off a terminal: a line at most every EVERY_S seconds (done of total, elapsed, time
left), a last line, only the innermost of nested steps writing; bars on a terminal."""

from __future__ import annotations

import io
import time

import pytest

from planner import progress as prog
from planner.progress import Progress, duration, progress


def _wait_for(stream: io.StringIO, text: str, timeout: float = 5.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in stream.getvalue():
            return stream.getvalue()
        time.sleep(0.01)
    raise AssertionError(f"{text!r} not written within {timeout} s: {stream.getvalue()!r}")


def test_lines_tell_done_of_total_elapsed_and_time_left() -> None:
    out = io.StringIO()
    with Progress("policy LM", 10, unit="steps", stream=out, every_s=0.05) as bar:
        bar.update(4)
        bar.set_postfix(loss="1.234")
        text = _wait_for(out, "4/10 steps (40%)")
        bar.update(6)
    last = out.getvalue().splitlines()[-1]
    line = next(ln for ln in text.splitlines() if "4/10" in ln)
    assert line.startswith("[policy LM] 4/10 steps (40%), ")
    assert "elapsed" in line and "left" in line and "loss 1.234" in line
    assert last.startswith("[policy LM] done: 10 steps in ")


def test_no_line_before_the_interval_and_none_after_close() -> None:
    out = io.StringIO()
    bar = Progress("sweep", 5, stream=out, every_s=30.0)
    bar.update(5)
    bar.close()
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[0]]
    assert out.getvalue().startswith("[sweep] done: 5 steps in ")
    time.sleep(0.05)
    bar.close()  # a second close writes nothing
    assert len(out.getvalue().splitlines()) == 1


def test_a_step_closed_early_says_where_it_stopped() -> None:
    out = io.StringIO()
    bar = Progress("ttc profile", 960, unit="problem-configs", stream=out, every_s=30.0)
    bar.update(120)
    bar.close()
    assert out.getvalue().startswith("[ttc profile] stopped at 120/960 problem-configs after ")


def test_an_error_stops_the_lines_without_a_last_line() -> None:
    out = io.StringIO()
    with pytest.raises(RuntimeError), Progress("PRM", 10, stream=out, every_s=0.02):
        raise RuntimeError("boom")
    time.sleep(0.1)
    assert out.getvalue() == ""


def test_only_the_innermost_step_writes() -> None:
    out = io.StringIO()
    with Progress("testbed policy", stream=out, every_s=0.03):
        with Progress("policy LM", 100, stream=out, every_s=0.03) as inner:
            inner.update(1)
            _wait_for(out, "[policy LM] 1/100")
            time.sleep(0.1)
            during = out.getvalue()
        # the stage (no total) writes again once its loop has ended: how long it has run
        text = _wait_for(out, "[testbed policy] ", timeout=5.0)
    assert "[testbed policy]" not in during
    assert any(ln.startswith("[testbed policy] ") and "elapsed" in ln for ln in text.splitlines())


def test_a_hush_keeps_the_open_steps_quiet_while_another_process_reports() -> None:
    out = io.StringIO()
    with Progress("testbed", stream=out, every_s=0.02):
        with prog.hush():
            time.sleep(0.15)
            assert out.getvalue() == ""
        _wait_for(out, "[testbed] ")


def test_progress_picks_lines_off_a_terminal_a_bar_on_one_and_nothing_when_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    silent = progress("x", 3, enabled=False)
    silent.update(3)
    silent.close()
    monkeypatch.setattr(prog, "is_terminal", lambda stream=None: False)
    lines = progress("x", 3)
    assert isinstance(lines, Progress)
    lines._finish()
    monkeypatch.setattr(prog, "is_terminal", lambda stream=None: True)
    from tqdm import tqdm

    bar = progress("x", 3)
    assert isinstance(bar, tqdm)
    bar.close()
    # a stage without a total draws nothing on a terminal: its loops draw the bars
    assert not isinstance(progress("stage"), Progress)


@pytest.mark.parametrize(
    ("seconds", "text"), [(45, "45 s"), (89.6, "90 s"), (318, "5.3 min"), (1584, "26.4 min")]
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text
