"""The model and verifier tables of a run config ([model], [reviser], [[verifiers]]).

Each key is a dataclass field whose metadata holds its help text (and, for [model], its
`ttc profile` flag); `profiling.sweep.config` builds the run config from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.strategies import AGGS

BACKENDS = ("transformers", "openai")
VERIFIER_KINDS = ("prm", "likelihood", "self")
DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class ModelConfig:
    """A causal LM loaded from a local directory (or `testbed:<name>`): [model] and [reviser]."""

    path: str = field(
        default="",
        metadata={"flag": "--model", "help": "Policy model directory (or testbed:policy)."},
    )
    device: str = field(
        default="cpu",
        metadata={
            "flag": "--device",
            "every_model": True,
            "help": "cpu, cuda, cuda:1, mps (moves the reviser too).",
        },
    )
    dtype: str = field(
        default="float32",
        metadata={"flag": "--dtype", "choices": DTYPES, "help": "Weights and activations dtype."},
    )
    batch_size: int = field(
        default=64,
        metadata={"flag": "--batch-size", "help": "Rows per forward batch of the policy."},
    )
    step_delimiter: str = field(
        default="\n",
        metadata={
            "flag": "--step-delimiter",
            "help": "Text that ends a solution step (search, verifiers).",
        },
    )
    template: str = field(
        default="{prompt}",
        metadata={
            "flag": "--template",
            "help": "Prompt template with {prompt} (verifiers default to it).",
        },
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={
            "flag": "--trust-remote-code",
            "help": "Let transformers run the model folder's code.",
        },
    )
    backend: str = field(
        default="transformers",
        metadata={
            "flag": "--backend",
            "choices": BACKENDS,
            "help": "transformers (in-process) | openai (a vLLM/SGLang server at --base-url).",
        },
    )
    base_url: str | None = field(
        default=None,
        metadata={
            "flag": "--base-url",
            "help": "openai backend: the server URL; URL1,URL2,... spreads Ray/pool workers.",
        },
    )
    served_model: str | None = field(
        default=None,
        metadata={
            "flag": "--served-model",
            "help": "openai backend: the model's name on the server (its /v1/models id).",
        },
    )
    model_config: str | None = field(
        default=None,
        metadata={
            "flag": "--model-config",
            "help": "openai backend: local folder with the served model's config.json and "
            "tokenizer (default: the model path).",
        },
    )
    max_concurrency: int = field(
        default=32,
        metadata={"flag": "--max-concurrency", "help": "openai backend: requests in flight."},
    )
    request_timeout: float = field(
        default=600.0,
        metadata={
            "flag": "--request-timeout",
            "help": "openai backend: seconds to wait for one answer (then retried).",
        },
    )

    def __post_init__(self) -> None:
        if not self.path and self.model_config:
            # the openai backend's local folder may be named by model_config alone
            object.__setattr__(self, "path", self.model_config)
        if not self.path:
            raise ValueError("model.path must not be empty")
        if self.backend not in BACKENDS:
            raise ValueError(
                f"model.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}"
            )
        if self.max_concurrency < 1 or self.request_timeout <= 0:
            raise ValueError("model.max_concurrency must be >= 1 and request_timeout > 0")
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda") or self.device == "mps"):
            raise ValueError(f"model.device must be cpu, cuda[:i] or mps, got {self.device!r}")
        if self.batch_size < 1:
            raise ValueError(f"model.batch_size must be >= 1, got {self.batch_size}")
        if "{prompt}" not in self.template:
            raise ValueError("model.template must contain '{prompt}'")
        if not self.step_delimiter:
            raise ValueError("model.step_delimiter must not be empty")


def _doc(text: str) -> dict[str, str]:
    """Field metadata of a key set in a table of its own (no flag): its help text."""
    return {"help": text}


@dataclass(frozen=True)
class VerifierSpec:
    """One scorer ([[verifiers]], or `--verifier KIND:k=v,...`): a PRM (tag or
    token-classification), a local LM's likelihood, or self-likelihood."""

    kind: str = field(metadata=_doc("prm | likelihood | self."))
    path: str | None = field(default=None, metadata=_doc("Model directory (or testbed:<name>)."))
    name: str | None = field(default=None, metadata=_doc("Name in the verifier id."))
    agg: str = field(default="last", metadata=_doc("Step aggregation: last | min | prod | mean."))
    mode: str = field(default="process", metadata=_doc("process (every step) | outcome."))
    stat: str = field(default="mean", metadata=_doc("Likelihood of a step: mean | min log-prob."))
    format: str | None = field(
        default=None,
        metadata=_doc(
            "PRM format: step_tag (Math-Shepherd), rlhflow (chat turns) or token_class; default: "
            "the model's verifier.json, else its architecture."
        ),
    )
    step_tag: str | None = field(default=None, metadata=_doc("step_tag PRM: the step tag."))
    good_token: str | None = field(default=None, metadata=_doc("PRM: the 'good' label token."))
    bad_token: str | None = field(default=None, metadata=_doc("PRM: the 'bad' label token."))
    separator: str | None = field(default=None, metadata=_doc("PRM: text between steps."))
    template: str | None = field(
        default=None, metadata=_doc("Prompt template with {prompt} (default: the model's).")
    )
    batch_size: int = field(default=16, metadata=_doc("Sequences per scoring batch."))
    base_url: str | None = field(
        default=None,
        metadata=_doc(
            "Score through this OpenAI-compatible server (likelihood, step_tag or token_class "
            "prm); path is then the served model's local config and tokenizer."
        ),
    )
    served_model: str | None = field(
        default=None, metadata=_doc("The verifier model's name on base_url's server.")
    )

    def __post_init__(self) -> None:
        # the verifiers' modules load torch: only when a config is built, not to list its flags
        from profiling.verifiers import MODES, PRM_FORMATS

        if bool(self.base_url) != bool(self.served_model):
            raise ValueError("a served verifier needs both base_url and served_model")
        if self.kind not in VERIFIER_KINDS:
            raise ValueError(
                f"verifiers.kind must be one of {', '.join(VERIFIER_KINDS)}, got {self.kind!r}"
            )
        if self.kind != "self" and not self.path:
            raise ValueError(f"a {self.kind} verifier needs a path")
        if self.agg not in AGGS:
            raise ValueError(f"verifiers.agg must be last, min, prod or mean, got {self.agg!r}")
        if self.mode not in MODES:
            raise ValueError(f"verifiers.mode must be process or outcome, got {self.mode!r}")
        if self.stat not in ("mean", "min"):
            raise ValueError(f"verifiers.stat must be mean or min, got {self.stat!r}")
        if self.batch_size < 1:
            raise ValueError(f"verifiers.batch_size must be >= 1, got {self.batch_size}")
        if self.format is not None and self.format not in PRM_FORMATS:
            raise ValueError(
                f"verifiers.format must be step_tag, rlhflow or token_class, got {self.format!r}"
            )
