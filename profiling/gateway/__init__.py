"""The policy gateway (`ttc serve`): an OpenAI-compatible endpoint applying a policy per request.

- `engine`: probe a batch of prompts, decide with `planner.policy.Policy`, run the decided
  strategies on an injected backend (in-process transformers, or an OpenAI-compatible server
  through `profiling.openai`), pick the answers (`choose`), count tokens and FLOPs; `lane`: one
  lane of a batch through those stages, failures isolated; `work`: the model calls;
  `asks`: a request, its reply or its failure;
- `batcher`: micro-batching of requests that arrive together (worker threads);
- `app`: the FastAPI routes, limits, reload, draining; `access`: request ids, the access log,
  the key, the metrics of every request; `protocol`: the OpenAI shapes and errors; `upstream`:
  failures as 500 / 502 / 504 without internals; `metrics`: Prometheus; `logs`: text or JSON;
- `loading`: the policy file and the models, named as `ttc profile` names them;
- `server`: uvicorn with SIGHUP reload and graceful shutdown.

May import: fastapi, uvicorn, prometheus_client (the `serve` extra), torch through the backends,
`planner.policy`, `profiling`.
"""

from profiling.gateway.app import Gateway, Limits, create_app
from profiling.gateway.asks import Ask, Failure, Reply
from profiling.gateway.engine import Engine
from profiling.gateway.loading import LoadedPolicy, load_engine, load_policy

__all__ = [
    "Ask",
    "Engine",
    "Failure",
    "Gateway",
    "Limits",
    "LoadedPolicy",
    "Reply",
    "create_app",
    "load_engine",
    "load_policy",
]
