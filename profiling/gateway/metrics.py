"""The gateway's Prometheus metrics (`GET /metrics`), on a registry of its own per app, so that
two gateways in one process (tests) never share counters.

Every request is counted once, when its response has been sent (`record`), with its final
status; the tokens and FLOPs it spent are counted whatever the status (a request that failed
after its probes spent them), labelled by status, so the counters hold all the work done.
Routes outside the gateway's own share the label `other` (a scanner's paths never become
label values)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from profiling.gateway.choose import Spend

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_SHARE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class Metrics:
    """Requests by bin, strategy and status; tokens and FLOPs by where they went; latency;
    the probes' share of each request's FLOPs; batch sizes; reloads."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "ttc_requests",
            "Requests served, by route, difficulty bin, strategy and HTTP status.",
            ["route", "bin", "strategy", "status"],
            registry=r,
        )
        self.tokens = Counter(
            "ttc_tokens",
            "Tokens spent, by kind (prompt, probe, candidate, verifier) and the request's status.",
            ["kind", "status"],
            registry=r,
        )
        self.flops = Counter(
            "ttc_flops",
            "FLOPs spent, by kind (probe, candidate, verifier) and the request's status.",
            ["kind", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "ttc_request_latency_seconds",
            "Request latency from arrival to response, by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.probe_share = Histogram(
            "ttc_probe_flops_share",
            "The probes' share of a request's FLOPs.",
            buckets=_SHARE_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "ttc_batch_requests",
            "Requests per micro-batch run together on the model.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.in_flight = Gauge("ttc_in_flight_requests", "Requests being answered.", registry=r)
        self.reloads = Counter(
            "ttc_policy_reloads", "Policy reloads, by result (ok, refused).", ["result"], registry=r
        )
        self.policy = Gauge(
            "ttc_policy_info",
            "The policy being served (value 1).",
            ["policy_id", "version"],
            registry=r,
        )

    def set_policy(self, policy_id: str, version: int) -> None:
        self.policy.clear()
        self.policy.labels(policy_id, str(version)).set(1)

    def record(
        self,
        route: str,
        status: int,
        latency_s: float,
        bin_label: str = "none",
        strategy: str = "none",
        spend: Spend | None = None,
    ) -> None:
        """One request answered: its count, latency, and whatever it spent."""
        st = str(status)
        self.requests.labels(route, bin_label, strategy, st).inc()
        self.latency.labels(route).observe(latency_s)
        if spend is None:
            return
        for kind, n in (
            ("prompt", spend.prompt_tokens),
            ("probe", spend.probe_tokens),
            ("candidate", spend.candidate_tokens),
            ("verifier", spend.verifier_tokens),
        ):
            self.tokens.labels(kind, st).inc(n)
        for kind, f in (
            ("probe", spend.probe_flops),
            ("candidate", spend.candidate_flops),
            ("verifier", spend.verifier_flops),
        ):
            self.flops.labels(kind, st).inc(f)
        if status == 200 and spend.total_flops > 0:
            self.probe_share.observe(spend.probe_flops / spend.total_flops)

    def text(self) -> bytes:
        return generate_latest(self.registry)
