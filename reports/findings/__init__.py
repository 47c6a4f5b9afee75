"""The paper's findings, tested on a run's own data, each marked with the numbers behind it.

`findings(run)` returns one `Finding` per claim (a) to (e) of the paper, then (f), the plan's
own (what it buys over the best single option); the report shows them first. Each is
computed from the run's tables with 95% intervals (seeded: the same tables give the same
findings), and marked by rules fixed here before any data is read:

- *reproduced*: the interval supports the claim (excludes zero on the claimed side);
- *not reproduced*: the interval contradicts it (lies on the other side of zero, or is exactly
  [0, 0]: the two sides identical on every problem);
- *inconclusive*: the interval spans zero;
- *not testable*: the run lacks the data (the finding says which table or rows). A comparison
  that the data can make but that comes out flat is a result, never "not testable".

A claim at several budgets ("beats at equal budget") is reproduced when it holds at some budget
and is contradicted at none, not reproduced when contradicted at some budget or tied at all;
a claim of several parts is reproduced when every part is and not reproduced when any part is
not.

(a) `plan/curves.parquet`: compute-optimal minus the plan's reference (weighted best-of-N with
    the plan's verifier) at every budget of the plan up to the reference's largest option (at a
    larger budget the reference cannot spend it, so those budgets are reported, not marked),
    and the efficiency multiple (the budget the
    reference needs for compute-optimal's accuracy, over the budget) with its interval: part two
    holds where the multiple's interval lies above 1 at some budget, and fails when it reaches
    no higher than 1 at every budget (a multiple below 1 is no contradiction: in FLOPs the
    reference's option may cost less than the budget). Paired bootstrap over problems when the
    plan can be rebuilt from the run's profile and problems, else the conservative unpaired
    interval from the plan's per-method intervals (said in `numbers["method"]`).
(b) profile + oracle bins: beam search (selection weighted, else best, else majority; agg last;
    the first config in canonical order where several widths share a budget) minus the sample
    pool with the same selection and verifier, on the easy bins (the two easiest oracle bins of
    three or more, else the easiest), at the lowest and highest budgets both have: ahead at the
    lowest and behind at the highest. Paired bootstrap over those problems.
(c) profile + oracle bins: revisions (weighted with the reference verifier, else majority) at the
    largest budget with two or more chains x length splits; the best split per bin (reported,
    with Spearman's rho of bin vs its parallel share); marked by the slope over bins of the most
    parallel split's accuracy minus the most sequential split's (an argmax is mostly ties under
    the bootstrap; this slope asks the same question on a continuous scale), with a bootstrap
    within bins: reproduced above 0, not reproduced below 0 (or exactly 0).
(d) profile + the larger model's profile + M: `planner.costs.exchange_report` at R = 0.16, 0.79,
    22 on oracle bins; test-time ahead on every easy bin at R = 0.16 and behind on the hardest bin
    at R = 22, each by the exchange's paired normal interval.
(e) profile + the larger model's profile: the small model's weighted best-of-N (reference
    verifier, agg last) at each of its pool sizes, against the larger model's largest majority
    pool whose mean FLOPs per query fit within the same FLOPs; paired bootstrap over the shared
    problems; marked as a claim at several budgets.
(f) `plan/curves.parquet` + the plan rebuilt from the profile: compute-optimal minus the best
    single option, both cross-fitted the same way (`reports.findings.plan_gain`), at every budget,
    with the selection's optimism; marked as a claim at several budgets.
"""

from __future__ import annotations

from reports.findings.base import MARKS, Finding
from reports.findings.compare import finding_b, finding_e
from reports.findings.compute_optimal import finding_a
from reports.findings.exchange import finding_d
from reports.findings.plan_gain import finding_f
from reports.findings.revisions import finding_c
from reports.run import RunTables

__all__ = ["MARKS", "Finding", "findings"]


def findings(run: RunTables) -> list[Finding]:
    """Findings (a) to (e) of the paper on this run, in that order, then the plan's (f)."""
    return [f(run) for f in (finding_a, finding_b, finding_c, finding_d, finding_e, finding_f)]
