"""`ttc serve`: the policy gateway, an OpenAI-compatible endpoint that applies a policy per request.

The gateway itself is `profiling.gateway` (FastAPI, uvicorn, prometheus_client: the `serve`
extra); this command checks the policy, loads the models and runs it.
"""

from __future__ import annotations

import os
from typing import Any

import click

from planner.commands.common import handle_errors
from planner.errors import PlannerError


@click.command("serve")
@click.option(
    "--policy", "policy_path", required=True, type=click.Path(dir_okay=False),
    help="Policy file (ttc policy export); SIGHUP or POST /admin/reload reads it again.",
)  # fmt: skip
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False),
    help="The run config the policy was profiled with ([model], [reviser], [[verifiers]]).",
)  # fmt: skip
@click.option("--model", "model", help="Policy model directory (or testbed:policy), in-process.")
@click.option(
    "--verifier", "verifiers", multiple=True,
    help="KIND[:k=v,...] as in ttc profile (the policy's probe verifier and any it selects with).",
)  # fmt: skip
@click.option("--reviser", help="Reviser model directory (policies that run revisions).")
@click.option("--testbed", help="quick | default | paper | DIR: resolves testbed:NAME paths.")
@click.option("--device", help="cpu, cuda, cuda:1, mps (every in-process model).")
@click.option("--batch-size", type=click.IntRange(1), help="Rows per forward batch [default: 64].")
@click.option("--upstream", help="Base URL of an OpenAI-compatible server (vLLM) to sample from.")
@click.option("--served-model", help="The upstream server's model name (with --upstream).")
@click.option(
    "--model-config", type=click.Path(file_okay=False),
    help="Directory with the upstream model's config.json and tokenizer (with --upstream).",
)  # fmt: skip
@click.option(
    "--upstream-timeout", type=float, default=120.0, show_default=True,
    help="Seconds to wait for the upstream server per call (then 504).",
)  # fmt: skip
@click.option(
    "--max-in-flight", default=32, show_default=True, type=click.IntRange(1),
    help="Requests in flight at the upstream server at once (with --upstream).",
)  # fmt: skip
@click.option("--grader", default="testbed", show_default=True, help="Answer extraction rules.")
@click.option("--name", default="policy", show_default=True, help="Model name clients ask for.")
@click.option("--default-budget", type=float, help="Budget without one asked [default: largest].")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--api-key", envvar="TTC_API_KEY", default=None,
    help="Require 'Authorization: Bearer KEY' on every route but /healthz (env TTC_API_KEY).",
)  # fmt: skip
@click.option("--max-request-bytes", default=1 << 20, show_default=True, type=click.IntRange(1))
@click.option("--max-tokens", default=4096, show_default=True, type=click.IntRange(1),
              help="Largest max_tokens a request may ask for.")  # fmt: skip
@click.option("--batch-window-ms", default=50.0, show_default=True, type=click.FloatRange(0),
              help="Longest wait of a micro-batch for the requests in flight.")  # fmt: skip
@click.option("--max-batch", default=32, show_default=True, type=click.IntRange(1))
@click.option("--workers", default=None, type=click.IntRange(1),
              help="Batches run at once [default: 1 in-process, 16 upstream].")  # fmt: skip
@click.option(
    "--threads", default=1, show_default=True, type=click.IntRange(1),
    help="torch CPU threads of the in-process model (small models run fastest on one).",
)  # fmt: skip
@click.option(
    "--log-json", is_flag=True,
    help="Log JSON lines (access, error with traceback, reload, start, shutdown) on stderr.",
)  # fmt: skip
@handle_errors
def serve_cmd(**o: Any) -> None:
    """Serve a policy behind an OpenAI-compatible API: POST /v1/completions and
    /v1/chat/completions probe the prompt, predict its difficulty bin, run the policy's strategy
    at the requested budget (extra_body {"ttc_budget": B} or model "policy@B") and return the
    chosen answer, with the decision in x-ttc-* headers. GET /v1/models, /healthz, /metrics
    (Prometheus); POST /admin/reload. Binds 127.0.0.1 unless --host says otherwise. SIGHUP
    reloads the policy; SIGTERM drains (healthz 503) and exits 0.

    \b
    Examples:
      ttc serve --policy runs/demo/policy.json --config data/configs/demo.toml --testbed quick
      ttc serve --policy policy.json --upstream http://127.0.0.1:8001/v1 \\
          --served-model qwen --model-config models/qwen --verifier prm:path=models/prm
    """
    from profiling.gateway import logs
    from profiling.gateway.app import Gateway, Limits
    from profiling.gateway.loading import load_engine, load_policy
    from profiling.gateway.server import make_server

    logs.configure(json_lines=o["log_json"])

    load_policy(o["policy_path"], 1)  # a bad file fails before any model loads
    upstream = o["upstream"]
    if upstream and (o["model"] or not o["served_model"] or not o["model_config"]):
        raise PlannerError("--upstream needs --served-model and --model-config, and no --model")
    flags = {
        "model": o["model"],
        "verifier": tuple(o["verifiers"]),
        "reviser": o["reviser"],
        "testbed": o["testbed"],
        "device": o["device"],
        "batch_size": o["batch_size"],
    }
    if upstream:
        # The run config's openai backend (profiling.openai): the server samples, the verifiers
        # named by --verifier score in this process (or on a server of their own).
        flags.update(
            backend="openai",
            base_url=upstream,
            served_model=o["served_model"],
            model_config=o["model_config"],
            request_timeout=o["upstream_timeout"],
            max_concurrency=o["max_in_flight"],
        )
    engine = load_engine(o["config_path"], flags, o["grader"], o["threads"])
    workers = o["workers"] or (16 if upstream else 1)
    limits = Limits(
        max_request_bytes=o["max_request_bytes"],
        max_tokens=o["max_tokens"],
        window_s=o["batch_window_ms"] / 1000.0,
        max_batch=o["max_batch"],
        workers=workers,
    )
    key = o["api_key"] or os.environ.get("TTC_API_KEY")
    gw = Gateway(engine, o["policy_path"], o["name"], key, limits, o["default_budget"])
    make_server(gw, o["host"], o["port"]).run()


COMMANDS = [serve_cmd]
