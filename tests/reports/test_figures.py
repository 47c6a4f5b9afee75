"""The report's figures on real tables: a synthetic run taken through the real commands (samples
-> curves -> plan -> policy, a larger model's profile, a held-out evaluation) and the real Qwen
dump. Each chart has the expected marks, fields and titles, is the same JSON on every call,
renders to SVG with vl-convert, and a figure whose data is absent says why."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import vl_convert as vlc
from planner.data import shipped_dir
from report_data import qwen_run_dir, run_tables, synthetic_run_dir

from reports.figures import (
    FIGURES,
    Missing,
    accuracy_vs_budget,
    beam_vs_best_of_n,
    compute_optimal_vs_baselines,
    cost_tradeoff,
    difficulty_figure,
    exchange_per_bin,
    pareto_frontier_chart,
    promise_vs_realised,
    revisions_ratio,
)
from reports.run import RunTables


@pytest.fixture(scope="module")
def synth() -> RunTables:
    return run_tables(synthetic_run_dir())


@pytest.fixture(scope="module")
def qwen() -> RunTables:
    root = qwen_run_dir()
    if root is None:
        pytest.skip("the shared Qwen dump is not present")
    return run_tables(root)


def _walk(node: Any, out: dict[str, set]) -> None:
    """Collect mark types, encoded fields and every title of a Vega-Lite spec."""
    if isinstance(node, dict):
        mark = node.get("mark")
        if mark is not None:
            out["marks"].add(mark["type"] if isinstance(mark, dict) else mark)
        facet = node.get("facet", {})
        channels = [*node.get("encoding", {}).values(), facet, *facet.values()]
        for channel in channels:
            if isinstance(channel, dict) and isinstance(channel.get("field"), str):
                out["fields"].add(channel["field"])
        title = node.get("title")
        if isinstance(title, str):
            out["titles"].add(title)
        elif isinstance(title, dict) and isinstance(title.get("text"), str):
            out["titles"].add(title["text"])
        for v in node.values():
            _walk(v, out)
    elif isinstance(node, list):
        for v in node:
            _walk(v, out)


def spec(chart: Any) -> dict[str, set]:
    out: dict[str, set] = {"marks": set(), "fields": set(), "titles": set()}
    _walk(chart.to_dict(), out)
    return out


def _has_title(titles: set, pattern: str) -> bool:
    return any(re.search(pattern, t) for t in titles)


# ----------------------------------------------------------------------------------------------
# The registry


def test_nine_figures_with_unique_names() -> None:
    names = [f.name for f in FIGURES]
    assert len(names) == 9 and len(set(names)) == 9
    assert all(re.fullmatch(r"[a-z_]+", n) for n in names)


@pytest.mark.parametrize("fig", FIGURES, ids=[f.name for f in FIGURES])
def test_every_figure_draws_the_synthetic_run(synth: RunTables, fig) -> None:
    chart = fig.build(synth)
    first = chart.to_json()
    assert first == fig.build(synth).to_json()  # deterministic: no auto-numbered names
    assert not re.search(r'"(param|view)_\d+"', first)
    svg = vlc.vegalite_to_svg(chart.to_dict())
    assert svg.lstrip().startswith("<svg") and "<path" in svg
    s = spec(chart)
    assert s["titles"] and s["marks"]


def test_the_qwen_dump_draws_what_it_can_and_says_why_not(qwen: RunTables) -> None:
    drawn, missing = [], {}
    for fig in FIGURES:
        try:
            chart = fig.build(qwen)
        except Missing as exc:
            missing[fig.name] = str(exc)
            continue
        assert chart.to_json() == fig.build(qwen).to_json()
        vlc.vegalite_to_svg(chart.to_dict())
        drawn.append(fig.name)
    assert {"accuracy_vs_budget", "compute_optimal", "pareto_frontier", "difficulty"} <= set(drawn)
    assert "beam" in missing["beam_vs_best_of_n"]
    assert "revisions" in missing["revisions"] and "ttc profile" in missing["revisions"]
    assert "large/profile" in missing["exchange"]
    assert "model" in missing["cost"] and "report.json" in missing["cost"]
    assert "policy.json" in missing["promise_vs_realised"]


# ----------------------------------------------------------------------------------------------
# Each function, from tables


def test_accuracy_vs_budget(synth: RunTables) -> None:
    s = spec(accuracy_vs_budget(synth.profile, synth.problems))
    assert {"line", "area"} <= s["marks"]
    assert {"budget", "acc", "ci_lo", "ci_hi", "series", "scope"} <= s["fields"]
    assert {"budget (generations per query, log2)", "accuracy (%)"} <= s["titles"]
    assert _has_title(s["titles"], "Accuracy against budget")
    f = spec(accuracy_vs_budget(synth.profile, synth.problems, unit="flops"))
    assert "flops" in f["fields"] and "FLOPs per query (log10)" in f["titles"]
    with pytest.raises(ValueError, match="unit"):
        accuracy_vs_budget(synth.profile, synth.problems, unit="tokens")


def test_accuracy_vs_budget_in_flops_needs_flops(qwen: RunTables) -> None:
    with pytest.raises(Missing, match="no FLOPs"):
        accuracy_vs_budget(qwen.profile, qwen.problems, unit="flops")


def test_compute_optimal_vs_baselines(synth: RunTables) -> None:
    chart = compute_optimal_vs_baselines(synth.plan_curves)
    s = spec(chart)
    assert {"line", "area", "bar", "text"} <= s["marks"]
    assert {"method", "acc", "ci_lo", "ci_hi", "multiple", "label"} <= s["fields"]
    assert _has_title(s["titles"], "Compute-optimal against majority")
    assert _has_title(s["titles"], "efficiency multiple")
    methods = {r["method"] for r in chart.vconcat[0].data.to_dict("records")}
    assert "compute_optimal" in methods and "coverage" not in methods
    assert any(m.startswith("weighted[") for m in methods)


def test_beam_vs_best_of_n(synth: RunTables) -> None:
    chart = beam_vs_best_of_n(synth.profile, synth.problems)
    s = spec(chart)
    assert {"line", "area"} <= s["marks"] and "scope" in s["fields"]
    series = set(chart.data["series"])
    assert series == {"beam weighted[prm]", "sample weighted[prm]"}
    assert set(chart.data["scope"]) == {"all problems", *(f"bin {b}" for b in range(1, 6))}
    no_beam = synth.profile[synth.profile["strategy"] != "beam"]
    with pytest.raises(Missing, match="beam"):
        beam_vs_best_of_n(no_beam, synth.problems)


def test_revisions_ratio(synth: RunTables) -> None:
    chart = revisions_ratio(synth.profile, synth.problems)
    s = spec(chart)
    assert {"errorbar", "line"} <= s["marks"]
    assert {"split", "acc", "ci_lo", "ci_hi"} <= s["fields"]
    assert "parallel chains x sequential revisions" in s["titles"]
    assert _has_title(s["titles"], r"Revisions at budget 8\b")
    assert set(chart.data["split"]) == {"2 x 4", "4 x 2"}
    four = revisions_ratio(synth.profile, synth.problems, budget=4)
    assert set(four.data["split"]) == {"1 x 4", "2 x 2", "4 x 1"}
    with pytest.raises(Missing, match="no revisions rows"):
        revisions_ratio(synth.profile[synth.profile["strategy"] != "revisions"], synth.problems)


def test_difficulty_figure(synth: RunTables) -> None:
    probe = {**synth.profile_meta["probe"], "mean_flops": 1.5e9}
    chart = difficulty_figure(synth.problems, synth.profile, probe)
    s = spec(chart)
    assert {"rect", "text", "line", "area"} <= s["marks"]
    assert {"oracle_bin", "predicted_bin", "problems", "bins", "budget", "acc"} <= s["fields"]
    assert "predicted bin (1 = easiest)" in s["titles"]
    assert _has_title(s["titles"], r"probes: k = 4, 1\.5e\+09 FLOPs")
    counts = chart.hconcat[0].data
    assert int(counts["problems"].sum()) == len(synth.problems) and len(counts) == 25
    alone = spec(difficulty_figure(synth.problems))
    assert "line" not in alone["marks"] and "rect" in alone["marks"]
    no_pred = synth.problems.assign(predicted_bin=None)
    with pytest.raises(Missing, match="predicted_bin"):
        difficulty_figure(no_pred)


def test_exchange_per_bin(synth: RunTables) -> None:
    chart = exchange_per_bin(synth.profile, synth.problems, synth.large_profile, 8.0, user_ratio=2)
    s = spec(chart)
    assert {"point", "errorbar", "rule"} <= s["marks"]
    assert {"difference", "ci_lo", "ci_hi", "winner", "panel"} <= s["fields"]
    assert "test-time minus larger model (accuracy points)" in s["titles"]
    panels = list(dict.fromkeys(chart.data["panel"]))
    assert len(panels) == 4 and any("your load" in p for p in panels)
    assert panels[0].startswith("R = 0.16")


def test_cost_tradeoff(synth: RunTables) -> None:
    chart = cost_tradeoff(synth.profile, synth.problems, "qwen2.5-1.5b", ["h100-sxm", "l4"], 5.0)
    s = spec(chart)
    assert {"point", "rule"} <= s["marks"]
    assert {"usd_per_1k", "latency_s", "acc", "hardware", "slo"} <= s["fields"]
    assert {"$ per 1k queries (log)", "latency per query (s, log)"} <= s["titles"]
    assert _has_title(s["titles"], "SLO 5 s")
    assert set(chart.hconcat[0].data["hardware"]) == {"h100-sxm", "l4"}


def test_cost_panel_leaves_out_hardware_without_a_price_and_says_so(
    synth: RunTables, tmp_path: Path
) -> None:
    # What `ttc demo` records for this CPU: `ttc calibrate` without --usd-per-hour gives $0/h,
    # which has no place on a log scale (the panel came out empty, the H100's points hidden).
    doc = json.loads((shipped_dir("hardware") / "h100-sxm.json").read_text(encoding="utf-8"))
    doc["name"] = "this-machine"
    doc["usd_per_hour"] = {"value": 0.0, "source": "given to ttc calibrate (--usd-per-hour)"}
    cpu = tmp_path / "this-machine.json"
    cpu.write_text(json.dumps(doc), encoding="utf-8")
    chart = cost_tradeoff(synth.profile, synth.problems, "qwen2.5-1.5b", ["h100-sxm", str(cpu)])
    d = chart.to_dict()
    note = d["usermeta"]["note"]
    assert note.startswith("Left out of the cost panel: this-machine,") and "price" in note
    (row,) = chart.vconcat
    usd, lat = row.hconcat
    assert set(usd.data["hardware"]) == {"h100-sxm"} and (usd.data["usd_per_1k"] > 0).all()
    assert set(lat.data["hardware"]) == {"h100-sxm", "this-machine"}
    assert row.title.text == note and row.title.orient == "bottom"  # under the panels
    # its points on the latency panel show no dollars (a tooltip said 0 before): NaN, in words
    cpu_rows = lat.data[lat.data["hardware"] == "this-machine"]
    assert cpu_rows["usd_per_1k"].isna().all()
    assert set(cpu_rows["cost"]) == {"no price per hour"}
    assert lat.data.loc[lat.data["priced"], "cost"].str.endswith(" $ per 1k queries").all()
    rows = [r for data in d["datasets"].values() for r in data if r["hardware"] == "this-machine"]
    assert rows and all(r["usd_per_1k"] is None for r in rows)
    assert "usd_per_1k" not in {
        t["field"] for t in d["vconcat"][0]["hconcat"][1]["encoding"]["tooltip"]
    }
    # every hardware priced: no note, the two panels side by side as before
    priced = cost_tradeoff(synth.profile, synth.problems, "qwen2.5-1.5b", ["h100-sxm", "l4"])
    assert "usermeta" not in priced.to_dict() and len(priced.hconcat) == 2


def test_pareto_frontier(synth: RunTables) -> None:
    chart = pareto_frontier_chart(synth.profile, synth.problems)
    s = spec(chart)
    assert {"line", "point"} <= s["marks"]
    assert {"mean_cost", "acc", "kind"} <= s["fields"]
    assert "mean budget (generations per query, log2)" in s["titles"]
    front = chart.layer[0].data
    assert front["mean_cost"].is_monotonic_increasing and front["acc"].is_monotonic_increasing


def test_promise_vs_realised(synth: RunTables) -> None:
    chart = promise_vs_realised(synth.evaluation)
    s = spec(chart)
    assert {"point", "errorbar"} <= s["marks"]
    assert {"bin", "kind", "acc", "ci_lo", "ci_hi"} <= s["fields"]
    assert _has_title(s["titles"], "promise against what 160 held-out problems realised")
    kinds = set(chart.data["kind"])
    assert kinds == {"promised (policy)", "realised (held-out)"}
    with pytest.raises(Missing, match="no per-bin rows"):
        promise_vs_realised({"budgets": []})


# ----------------------------------------------------------------------------------------------
# Missing data: one line naming the file and the command that writes it


@pytest.mark.parametrize(
    ("name", "change", "words"),
    [
        ("accuracy_vs_budget", {"profile": None}, ["profile.parquet", "ttc curves"]),
        ("compute_optimal", {"plan_curves": None}, ["curves.parquet", "ttc plan"]),
        ("exchange", {"large_profile": None}, ["large/profile", "ttc demo"]),
        ("exchange", {"context": {}}, ["model_multiplier", "report.json"]),
        ("cost", {"context": {}}, ["model", "report.json"]),
        ("promise_vs_realised", {"evaluation": None}, ["evaluation.json", "ttc policy evaluate"]),
        ("promise_vs_realised", {"policy": None}, ["policy.json", "ttc policy export"]),
        ("difficulty", {"problems": None}, ["problems.parquet"]),
        ("pareto_frontier", {"problems": None}, ["problems.parquet"]),
    ],
)
def test_missing_says_which_file(synth: RunTables, name: str, change: dict, words: list) -> None:
    fig = next(f for f in FIGURES if f.name == name)
    with pytest.raises(Missing) as exc:
        fig.build(dataclasses.replace(synth, **change))
    msg = str(exc.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
