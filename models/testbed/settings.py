"""Settings of a testbed run per scale (`quick`, `default`, `paper`); they key the cache."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace

from models.testbed.modeling import LlamaShape, TrainSpec
from models.testbed.revision_data import CONTEXTS
from models.testbed.task import DEFAULT_LEVELS

SCALES = ("default", "paper")
# Bump a stage's version when its code changes what it produces, so stale caches are not reused.
STAGE_VERSIONS = {"policy": 1, "large": 1, "prm": 1, "reviser": 3, "quality": 2}


@dataclass(frozen=True)
class PRMSpec:
    """Monte-Carlo rollout labels (Math-Shepherd) and PRM fine-tuning from the larger LM."""

    questions: int  # training questions (levels 1..8, round-robin)
    samples_per_question: int  # policy solutions per question
    rollouts: int  # rollouts per step prefix; soft label = fraction reaching the right answer
    train: TrainSpec
    lm_weight: float = 0.5  # auxiliary LM loss on correct solutions keeps the LM's step checking
    grouped: bool = False  # batches of solutions of similar length (less padding)
    wrong_per_question: int = (
        0  # label up to this many wrong-answer solutions (and as many right); 0: all
    )
    stop_dead: bool = (
        False  # label 0, without rollouts, the steps after a prefix no rollout finishes
    )
    # The recipe (models/testbed/prm_train.py); the defaults are the paper's.
    labels: str = "soft"  # soft: fraction of rollouts reaching the answer; hard: any did
    head: str = "tag"  # tag: P(good) at the step tag; value: a one-label token-class head
    loss: str = "bce"  # bce, rank (within question and step index) or bce+rank
    extra_layers: int = 0  # new decoder layers stacked on the larger LM
    per_question: int = 4  # solutions of one question per batch, with a rank loss
    surprise: float = 0.0  # weight of the larger LM's self-distilled log-probs (prm_train.py)

    def __post_init__(self) -> None:
        if min(self.questions, self.samples_per_question, self.rollouts) <= 0:
            raise ValueError(f"PRM data sizes must be positive, got {self}")
        if (
            self.labels not in PRM_LABELS
            or self.head not in PRM_HEADS
            or self.loss not in PRM_LOSSES
            or self.extra_layers < 0
            or self.per_question < 2
            or self.surprise < 0
        ):
            raise ValueError(f"unknown PRM recipe {self}")

    def recipe(self) -> dict:
        """The recipe's choices (labels, head, loss, extra layers), for the manifest."""
        return {
            "labels": self.labels,
            "head": self.head,
            "loss": self.loss,
            "extra_layers": self.extra_layers,
            "surprise": self.surprise,
            "paper": self.is_paper(),
        }

    def is_paper(self) -> bool:
        return all(getattr(self, k) == v for k, v in PAPER_RECIPE.items())


@dataclass(frozen=True)
class ReviserSpec:
    """Revision data: policy attempts per question; 0-4 wrong ones in context, then a right one."""

    questions: int
    samples_per_question: int
    train: TrainSpec
    replay: float = 0.5  # share of each batch that is plain pretraining data
    keep_share: float = 0.0  # share of examples whose last attempt in context is a correct one
    # The recipe (models/testbed/revision_data.py): "wrong", the paper's data (wrong attempts in
    # context, then a right one); "sampled": attempts as sampled, then a right one; "fix": contrast
    # pairs that fix the most recent attempt or keep it; "feedback": "fix" with each attempt's
    # first wrong line flagged (by the larger LM at test time: a strategy variant of its own)
    context: str = "wrong"
    grouped: bool = False  # batches of revision examples of similar length (less padding)

    def __post_init__(self) -> None:
        if (
            self.questions <= 0
            or self.samples_per_question <= 1
            or not 0 <= self.replay < 1
            or not 0 <= self.keep_share <= 1
            or self.context not in CONTEXTS
        ):
            raise ValueError(f"reviser data sizes must be positive, got {self}")


@dataclass(frozen=True)
class EvalSpec:
    """Size of the quality check written into the manifest (the benchmark runs a larger one)."""

    problems_per_level: int
    samples: int


@dataclass(frozen=True)
class TestbedSettings:
    __test__ = False

    quick: bool
    scale: str
    seed: int
    # The PRM's training recipe, a name of PRM_RECIPES; empty: the scale's (DEFAULT_PRM_RECIPE).
    prm_recipe: str = ""
    policy: LlamaShape = field(init=False)
    large: LlamaShape = field(init=False)
    pretrain: TrainSpec = field(init=False)
    # The larger LM's pretraining: the same data, steps and tokens; its own peak learning rate.
    large_pretrain: TrainSpec = field(init=False)
    prm: PRMSpec = field(init=False)
    reviser: ReviserSpec = field(init=False)
    eval: EvalSpec = field(init=False)
    # Levels of the PRM, reviser and quality questions (quick: short ones, to stay within a minute).
    levels: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not self.prm_recipe:
            object.__setattr__(
                self, "prm_recipe", DEFAULT_PRM_RECIPE["quick" if self.quick else self.scale]
            )
        if self.prm_recipe not in PRM_RECIPES:
            raise ValueError(
                f"unknown PRM recipe {self.prm_recipe!r}; choose one of {', '.join(PRM_RECIPES)}"
            )
        self._per_scale()
        object.__setattr__(self, "prm", replace(self.prm, **PRM_RECIPES[self.prm_recipe]))

    def _per_scale(self) -> None:
        s = object.__setattr__
        if self.quick:
            # Small enough for <= 60 s on 2 cores; trained on the quick levels (1-3) only, so the
            # policy solves some of them and the demo's findings have data (measured on 60 fresh
            # problems x 4 samples: policy pass@1 .79/.07/.03 on levels 1/2/3 after 1,000 steps;
            # on all 8 levels at 400 steps it was .07/.04/.03, at 120 steps 0). head_dim 32
            # everywhere: vLLM's CPU attention refuses head_dim 16, and the quick models are the
            # ones its tests serve.
            s(self, "levels", (1, 2, 3))
            s(self, "policy", LlamaShape(64, 2, 2))
            s(
                self,
                "large",
                LlamaShape(96, 2, 3) if self.scale == "default" else LlamaShape(128, 3, 4),
            )
            s(self, "pretrain", TrainSpec(steps=1000, batch_size=16, lr=3e-3, warmup=20))
            s(self, "large_pretrain", self.pretrain)
            s(
                self,
                "prm",
                PRMSpec(
                    8,
                    2,
                    2,
                    TrainSpec(steps=15, batch_size=8, lr=1e-3, warmup=3),
                    grouped=True,
                    wrong_per_question=1,
                    stop_dead=True,
                ),
            )
            # 15 steps teach no recipe anything; the quick reviser keeps the paper's data.
            s(
                self,
                "reviser",
                ReviserSpec(
                    8, 4, TrainSpec(steps=15, batch_size=8, lr=1e-3, warmup=3), grouped=True
                ),
            )
            s(self, "eval", EvalSpec(problems_per_level=2, samples=4))
            return
        s(self, "levels", DEFAULT_LEVELS)
        s(self, "policy", LlamaShape(64, 4, 4))
        # default: the larger LM's MLP is 528 wide (4.125·hidden), which makes it 4.04x the policy's
        # parameters (>= 4x asked; 4·hidden gave 3.95x). Shrinking the policy's MLP instead (to 224)
        # cost it most of its accuracy (pass@1 .98/.73/.47 -> .96/.42/.28 on levels 1-3).
        # paper: ~13x, like the paper's PaLM 2-S* vs a model ~14x larger.
        s(
            self,
            "large",
            LlamaShape(128, 4, 4, intermediate=528)
            if self.scale == "default"
            else LlamaShape(192, 6, 6),
        )
        # Batch 16 x 2000 steps (same ~3.1M tokens as 32 x 1000): at this size the number of
        # optimiser steps limits the policy, not tokens. Measured (benchmarks/testbed_quality.py):
        # policy pass@1 on level 1 .54 -> .97, level 8 .05, answers mostly from correct chains.
        # Tokens matter too: batch 12 x 2000 (2.3M tokens, 7.0 min of training instead of 8.4)
        # left the policy at .84 .41 .21 .07 on levels 1-4 (against .97 .74 .48 .33).
        s(self, "pretrain", TrainSpec(steps=2000, batch_size=16, lr=2e-3, warmup=50))
        # paper: the 13x model stalls at lr 2e-3 (loss .048 at the end, against .016 for the 4x
        # model); at 1e-3 it reaches .018, and its pass@1 is above the policy at every level (.95 on
        # level 2, .31 on level 8).
        s(
            self,
            "large_pretrain",
            self.pretrain if self.scale == "default" else replace(self.pretrain, lr=1e-3),
        )
        # PRM labels: the paper's 16 samples per question; up to 4 with a wrong answer and as many
        # right ones are labelled, and rollouts stop at a dead prefix: 9.8k rollouts in 42 s for 775
        # solutions (2,000 of them dead-labelled lines), against 17.3k in 70 s for 640 random ones.
        # paper: 8x the labelled questions and steps (with DEFAULT_PRM_RECIPE's two new layers and
        # self-distilled log-probs) took the PRM's step AUROC on fresh questions from .56 to .79;
        # no recipe on the default's labels, nor on 4x them, got above .60 (README: Testbed).
        big = self.scale == "paper"
        s(
            self,
            "prm",
            PRMSpec(
                1280 if big else 160,
                16,
                6,
                TrainSpec(steps=1600 if big else 200, batch_size=16, lr=5e-4, warmup=20),
                grouped=True,
                wrong_per_question=4,
                stop_dead=True,
            ),
        )
        # 300 steps: the reviser must learn to solve after earlier attempts (the policy is
        # pretrained on one example per row); at 150 steps it had not (loss .50, easy .67 -> .48
        # after revisions).
        # Length-grouped batches: 103 s for the 300 steps against 194 s (half the padding gone).
        # The "fix" recipe at lr 1e-3 with a quarter of each batch replay (README: the reviser
        # and its recipes): last of 5 attempts minus the first +5.2 ± 3.5 points on easy levels,
        # +2.3 ± 3.0 on medium, where the paper's recipe at lr 5e-4 and half replay gave -3.9 ± 3.4
        # and -6.0 ± 2.9 (benchmarks/reviser_recipes.py, 3 x 40 fresh questions per level).
        s(
            self,
            "reviser",
            ReviserSpec(
                384,
                8,
                TrainSpec(steps=300, batch_size=16, lr=1e-3, warmup=30),
                replay=0.25,
                context="fix",
                grouped=True,
            ),
        )
        s(self, "eval", EvalSpec(problems_per_level=16, samples=8))

    def to_dict(self) -> dict:
        return asdict(self)

    def stage_key(self, stage: str) -> str:
        """Cache key of one stage: its own settings, the seed, its version and its inputs' keys."""
        parts: dict = {"stage": stage, "version": STAGE_VERSIONS[stage], "seed": self.seed}
        if stage in ("policy", "large"):
            if stage == "policy":
                shape, train = self.policy, self.pretrain
            else:
                shape, train = self.large, self.large_pretrain
            parts.update(model=_model_key(shape), train=asdict(train))
            # Pretraining levels other than all of them key the models; the default's keys (from
            # before the levels were a setting) stay as they were.
            if self.levels != DEFAULT_LEVELS:
                parts["levels"] = self.levels
        elif stage == "prm":
            parts.update(
                prm=_prm_key(self.prm),
                levels=self.levels,
                policy=self.stage_key("policy"),
                large=self.stage_key("large"),
            )
        elif stage == "reviser":
            parts.update(
                reviser=asdict(self.reviser), levels=self.levels, policy=self.stage_key("policy")
            )
        elif stage == "quality":
            parts.update(
                eval=asdict(self.eval),
                levels=self.levels,
                **{k: self.stage_key(k) for k in ("policy", "large", "prm", "reviser")},
            )
        else:
            raise ValueError(f"unknown stage {stage!r}")
        return f"{stage}-{_digest(parts)}"

    def run_key(self) -> str:
        return "run-" + _digest({k: self.stage_key(k) for k in STAGE_VERSIONS})


def _model_key(spec: LlamaShape) -> dict:
    """A model's part of a cache key; the default MLP width is left out, so the keys of models
    trained before `intermediate` existed still match (their weights are the same)."""
    d = asdict(spec)
    if not d["intermediate"]:
        del d["intermediate"]
    return d


def _prm_key(spec: PRMSpec) -> dict:
    """The PRM's part of a cache key; recipe fields at the paper's values are left out, so the
    keys of PRMs trained before the recipe was a setting still match."""
    d = asdict(spec)
    for name, paper in PAPER_RECIPE.items():
        if d[name] == paper:
            del d[name]
    if spec.loss == "bce":
        del d["per_question"]  # only ranking batches group solutions by question
    return d


# The recipe's choices (models/testbed/prm_train.py reads them).
PRM_LABELS = ("soft", "hard")
PRM_HEADS = ("tag", "value")
PRM_LOSSES = ("bce", "rank", "bce+rank")
PAPER_RECIPE = {"labels": "soft", "head": "tag", "loss": "bce", "extra_layers": 0, "surprise": 0.0}

# The recipe a scale trains when none is named: the paper's where no recipe checks steps on that
# scale's labels (their figures are at chance), the best measured one at the paper scale.
DEFAULT_PRM_RECIPE = {"quick": "paper", "default": "paper", "paper": "surprise+deep2"}

# Named recipes (models/testbed/prm_train.py), each measured by benchmarks/prm_recipes.py; the
# README's testbed section gives their figures.
PRM_RECIPES: dict[str, dict] = {
    "paper": {},
    "hard": {"labels": "hard"},
    "rank": {"loss": "rank"},
    "bce+rank": {"loss": "bce+rank"},
    "value": {"head": "value"},
    "deep2": {"extra_layers": 2},
    "rank+deep2": {"loss": "rank", "extra_layers": 2},
    "bce+rank+deep2": {"loss": "bce+rank", "extra_layers": 2},
    "surprise+deep2": {"extra_layers": 2, "surprise": 1.0},
    "surprise+rank+deep2": {"loss": "rank", "extra_layers": 2, "surprise": 1.0},
    "surprise+bce+rank+deep2": {"loss": "bce+rank", "extra_layers": 2, "surprise": 1.0},
}


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
