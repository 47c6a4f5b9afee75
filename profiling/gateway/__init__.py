"""The policy gateway (`ttc serve`): an OpenAI-compatible endpoint applying a policy per request.

- `engine`: probe a batch of prompts, decide with `planner.policy.Policy`, run the decided
  strategies on an injected backend (in-process transformers, or an OpenAI-compatible server
  through `profiling.openai`), pick the answers (`choose`), count tokens and FLOPs;
- `batcher`: micro-batching of requests that arrive together (worker threads);
- `app`: the FastAPI routes, limits, key, reload; `protocol`: the OpenAI shapes and errors;
  `upstream`: backend failures as 502 / 504; `metrics`: Prometheus;
- `loading`: the policy file and the models, named as `ttc profile` names them;
- `server`: uvicorn with SIGHUP reload and graceful shutdown.

May import: fastapi, uvicorn, prometheus_client (the `serve` extra), torch through the backends,
`planner.policy`, `profiling`.
"""

from profiling.gateway.app import Gateway, Limits, create_app
from profiling.gateway.engine import Ask, Engine, Reply
from profiling.gateway.loading import LoadedPolicy, load_engine, load_policy

__all__ = [
    "Ask",
    "Engine",
    "Gateway",
    "Limits",
    "LoadedPolicy",
    "Reply",
    "create_app",
    "load_engine",
    "load_policy",
]
