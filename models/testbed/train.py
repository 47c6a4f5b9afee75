"""`train_testbed`: train (or fetch from the cache) the testbed's four models and write a manifest.

Cache layout under ``<root>/testbed`` (root: env `TTC_CACHE`, else ``~/.cache/ttc-planner``)::

    stages/<stage>-<key>/   one finished stage: model/ (HF format) and record.json
    work/<stage>-<key>/     checkpoints of a stage in progress (resume)
    runs/run-<key>/         a finished run: policy/ large/ prm/ reviser/ manifest.json
    locks/<key>.lock        flock per run and per stage: one trainer of each, across processes
                            (pytest-xdist workers wait, then reuse it)

A stage's key hashes its settings, the seed and the keys of the stages it reads, so a finished stage
is reused by every run that needs it, an interrupted stage resumes from its last checkpoint, and a
second call with the same settings only copies files. `--out` receives a copy of the run (hard links
where the file system allows), so deleting the cache never breaks it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from models.testbed import task
from models.testbed.prm import prepare_labels
from models.testbed.settings import (
    DEFAULT_PRM_RECIPE,
    PAPER_RECIPE,
    STAGE_VERSIONS,
    TestbedSettings,
)
from models.testbed.stages import STAGES
from models.testbed.tokenizer import BAD_TOKEN, GOOD_TOKEN, STEP_TAG
from planner.errors import PlannerError
from planner.progress import hush, say
from planner.progress import progress as report
from planner.tables.fsutil import atomic_write_text, ensure_writable_dir
from planner.timings import TESTBED, about

MODEL_DIRS = ("policy", "large", "prm", "reviser")
MANIFEST = "manifest.json"


def cache_root() -> Path:
    env = os.environ.get("TTC_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ttc-planner"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _copy_tree(src: Path, dst: Path) -> None:
    """Copy a directory, hard-linking files where possible (cheap, and safe: files are never
    modified in place, a stage is replaced as a whole)."""

    def link_or_copy(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=link_or_copy)


def _run_stage(
    root: Path, key: str, fn: Callable[[Path, Path], dict], progress: bool
) -> tuple[Path, dict]:
    """Run `fn(work_dir, stage_dir)` unless the stage is cached; returns (stage dir, record)."""
    final = root / "stages" / key
    record_path = final / "record.json"
    if record_path.exists():
        return final, json.loads(record_path.read_text())
    with _locked(root / "locks" / f"{key}.lock"):
        if record_path.exists():  # another process finished it while we waited
            return final, json.loads(record_path.read_text())
        return _run_stage_locked(root, key, fn, progress)


def _run_stage_locked(
    root: Path, key: str, fn: Callable[[Path, Path], dict], progress: bool
) -> tuple[Path, dict]:
    final = root / "stages" / key
    work = root / "work" / key
    work.mkdir(parents=True, exist_ok=True)
    stage_tmp = root / "stages" / f".{key}.tmp"
    if stage_tmp.exists():
        shutil.rmtree(stage_tmp)
    stage_tmp.mkdir(parents=True)
    name = key.rsplit("-", 1)[0]
    if progress:
        say(f"[testbed] stage {name}: started (cache key {key})")
    # Off a terminal, a line every 30 s while the stage's loops are between bars (sampling).
    with report(f"testbed {name}", enabled=progress):
        record = fn(work, stage_tmp)
    (stage_tmp / "record.json").write_text(json.dumps(record, sort_keys=True, indent=2))
    if final.exists():
        shutil.rmtree(final)
    os.replace(stage_tmp, final)
    shutil.rmtree(work, ignore_errors=True)
    return final, record


def ensure_testbed(
    *,
    quick: bool = False,
    scale: str = "default",
    seed: int = 0,
    progress: bool = True,
    prm_recipe: str = "",
) -> Path:
    """Train the testbed into the cache if it is not there yet; return the run directory.

    Safe to call from several processes at once (pytest-xdist workers): one trains, the others
    wait on the lock and then find the finished run.
    """
    settings = _settings(quick, scale, seed, prm_recipe)
    root = cache_root() / "testbed"
    run_dir = root / "runs" / settings.run_key()
    if (run_dir / MANIFEST).exists():
        return run_dir
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PlannerError(
            f"cannot create the cache directory {root}: {exc.strerror or exc}"
        ) from None
    with _locked(root / "locks" / f"{settings.run_key()}.lock"):
        if (run_dir / MANIFEST).exists():
            return run_dir
        if progress:
            say(first_run_line(settings, root))
        _train_into(settings, root, run_dir, progress)
    return run_dir


def first_run_line(settings: TestbedSettings, root: Path) -> str:
    """What a first run says before it trains: what, how long it took when measured, where the
    models go, and that later runs reuse them."""
    name = "quick" if settings.quick else settings.scale
    took = TESTBED[name].call_s
    other = settings.prm_recipe != DEFAULT_PRM_RECIPE[name]
    recipe = f" with the PRM recipe {settings.prm_recipe}" if other else ""
    return (
        f"[testbed] training the {name} testbed{recipe} once, into the cache {root} "
        f"(from an empty cache this took {about(took)} on 2 CPU cores; stages already in the "
        "cache are reused, and so is the whole testbed by every later run)"
    )


def _train_into(settings: TestbedSettings, root: Path, run_dir: Path, progress: bool) -> None:
    # One intra-op thread by default: these models are too small to gain much from more, and on a
    # shared CPU two threads per process ran 7x slower than one (threads spin at OpenMP barriers
    # while descheduled). Measured losses were bit-identical with 1 or 2 threads.
    torch.set_num_threads(max(1, int(os.environ.get("TTC_TESTBED_THREADS", "1"))))
    started = time.perf_counter()
    dirs: dict[str, Path] = {}
    records: dict[str, dict] = {}
    child = _start_large_pretraining(settings, root, progress)
    try:
        _run_stages(settings, root, dirs, records, progress, child)
    finally:
        if child is not None and child.is_alive():
            child.terminate()
            child.join()
    manifest = build_manifest(settings, records)
    manifest["wall_seconds_this_call"] = round(time.perf_counter() - started, 2)
    tmp = run_dir.with_name(run_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for name in MODEL_DIRS:
        _copy_tree(dirs[name] / "model", tmp / name)
    (tmp / MANIFEST).write_text(json.dumps(manifest, sort_keys=True, indent=2) + "\n")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    os.replace(tmp, run_dir)


def _run_stages(
    settings: TestbedSettings,
    root: Path,
    dirs: dict[str, Path],
    records: dict[str, dict],
    progress: bool,
    child,
) -> None:
    """Policy, then everything that needs only the policy (the reviser, the PRM's rollout labels)
    while the child still pretrains the larger LM; then the PRM and the quality check."""

    def run(name: str) -> None:
        fn = STAGES[name]
        dirs[name], records[name] = _run_stage(
            root,
            settings.stage_key(name),
            lambda work, out, fn=fn: fn(settings, work, out, dirs, progress),
            progress,
        )

    run("policy")
    run("reviser")
    prm_key = settings.stage_key("prm")
    if not (root / "stages" / prm_key / "record.json").exists():
        with _locked(root / "locks" / f"{prm_key}.lock"):
            work = root / "work" / prm_key
            work.mkdir(parents=True, exist_ok=True)
            with report("testbed PRM labels", enabled=progress):
                prepare_labels(settings, work, dirs, progress)
    if child is not None:
        # The child trained (or failed to train) the larger LM; if it failed, the stage runs
        # here (resuming from its checkpoint) and raises the real error if there is one.
        with hush():  # meanwhile the child's lines say how far it is
            child.join()
    if not settings.quick and "TTC_TESTBED_THREADS" not in os.environ:
        # From here on this process runs alone: the PRM (the larger LM's size) and the quality
        # check use both cores. Quick runs stay on one thread: under pytest-xdist other workers
        # share the cores, and oversubscribed threads spin at OpenMP barriers.
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    for name in ("large", "prm", "quality"):
        run(name)


def _start_large_pretraining(settings: TestbedSettings, root: Path, progress: bool):
    """Pretrain the larger LM in a child process while this one pretrains the policy.

    The two pretraining runs are independent (same data stream, own seeds), so on 2 cores this
    halves the wall time of the longest part of a run; each process uses one torch thread, and
    the weights are the same as when trained one after the other. Off with TTC_TESTBED_PARALLEL=0.
    """
    if os.environ.get("TTC_TESTBED_PARALLEL", "1") == "0":
        return None
    if (root / "stages" / settings.stage_key("large") / "record.json").exists():
        return None
    child = multiprocessing.get_context("spawn").Process(
        target=_pretrain_large_child,
        args=(settings.quick, settings.scale, settings.seed, str(root), progress),
        daemon=True,
    )
    child.start()
    return child


def _pretrain_large_child(quick: bool, scale: str, seed: int, root: str, progress: bool) -> None:
    torch.set_num_threads(max(1, int(os.environ.get("TTC_TESTBED_THREADS", "1"))))
    settings = TestbedSettings(quick=quick, scale=scale, seed=seed)
    fn = STAGES["large"]
    _run_stage(
        Path(root),
        settings.stage_key("large"),
        lambda work, out: fn(settings, work, out, {}, progress),
        progress,
    )


def build_manifest(settings: TestbedSettings, records: dict[str, dict]) -> dict:
    models = {
        name: {k: v for k, v in records[name].items() if k != "quality"} for name in MODEL_DIRS
    }
    total_train = sum(float(models[n].get("train_seconds", 0.0)) for n in MODEL_DIRS)
    total_stage = sum(float(records[n].get("stage_seconds", 0.0)) for n in (*MODEL_DIRS, "quality"))
    return {
        "kind": "ttc-planner testbed",
        "run_key": settings.run_key(),
        "stage_keys": {n: settings.stage_key(n) for n in STAGE_VERSIONS},
        "seed": settings.seed,
        "quick": settings.quick,
        "scale": settings.scale,
        "settings": settings.to_dict(),
        "models": models,
        "size_ratio_large_to_policy": round(
            models["large"]["params"] / models["policy"]["params"], 3
        ),
        "task": {
            "name": "arithmetic-restated",
            "levels": list(task.DEFAULT_LEVELS),
            "trained_levels": list(settings.levels),
            "max_value": task.MAX_VALUE,
            "prompt_format": task.PROMPT_FORMAT,
            "step_delimiter": task.STEP_DELIMITER,
            "answer_format": task.ANSWER_FORMAT,
            "example": _example(),
        },
        "prm": {
            "step_tag": STEP_TAG,
            "good_token": GOOD_TOKEN,
            "bad_token": BAD_TOKEN,
            "format": "prompt + line_1 + step_tag + '\\n' + ... + line_n + step_tag (every "
            "completion line, the answer line included, is followed by the tag); score of line i = "
            "softmax(logits[good, bad]) at its tag, P(good)",
            "labels": "Monte-Carlo rollouts of the policy from each step prefix; soft label = "
            "fraction reaching the right answer (hard: 1 if any did)",
            "recipe": records["prm"].get("recipe", {**PAPER_RECIPE, "paper": True}),
            "recipes": "labels soft|hard; head tag (P(good) at the tag) | value (a one-label "
            "token-class head at the tag, steps joined by the tag alone; verifier.json in prm/); "
            "loss bce (the paper's) | rank (pairwise within a question and step index) | "
            "bce+rank; extra_layers new decoder layers on the larger LM; surprise: weight of a "
            "training-only distillation of the larger LM's own per-character log-probs",
            "label_selection": "with wrong_per_question > 0: per question, up to that many sampled "
            "solutions with a wrong final answer and as many with a right one; with stop_dead: "
            "after a step no rollout finishes, later steps are labelled 0 "
            "without rollouts (OmegaPRM)",
            "init_from": "large",
        },
        "reviser": {
            "prompt_format": records["reviser"].get("prompt_format"),
            "attempt_format": records["reviser"].get("attempt_format"),
            "max_attempts": 4,
            "keep_share": records["reviser"].get("keep_share", 0.0),
            "context": records["reviser"].get("context", "wrong"),
            "training": REVISER_TRAINING[records["reviser"].get("context", "wrong")],
        },
        "verifiers": {
            "large_likelihood": "teacher-forced log-probs of the larger LM: per-line mean "
            "log-prob, solution score = min over lines; weight exp(score)",
            "prm": "last-line PRM score (P(good) at the last tag)",
        },
        "train_seconds_total": round(total_train, 2),
        "stage_seconds_total": round(total_stage, 2),
        "quality": records["quality"].get("quality", {}),
    }


REVISER_TRAINING = {
    "wrong": "0-4 of the policy's incorrect attempts in context, the last one the closest to the "
    "target by edit distance, then a correct attempt (as the paper). Departure: a question whose "
    "attempts are all correct gives, half the time, one correct attempt in context before another "
    "(chains hold correct attempts at test time); with probability keep_share questions with "
    "incorrect attempts do too; replay of packed pretraining rows",
    "sampled": "Departure from the paper: 0-4 of the policy's attempts in context as sampled, "
    "right or wrong, then another right attempt (the gold solution when none is right); the paper "
    "puts only incorrect attempts in context, which teaches that whatever is in context is wrong, "
    "while a test-time chain holds right attempts too. Replay of packed pretraining rows",
    "fix": "Departure from the paper: balanced contrast pairs per question, the most recent "
    "attempt in context right (the target keeps it whole) or wrong (the target copies its lines "
    "up to its first wrong line, found by the step checker in training data only, then continues "
    "correctly), after 0-3 other attempts as sampled; the paper picks near-miss wrong attempts by "
    "edit distance. Replay of packed pretraining rows",
    "feedback": "Departure from the paper: the fix recipe with each attempt's first wrong line "
    "flagged by <bad> (by the step checker in training data; by the larger LM's likelihood at test "
    "time, a strategy variant of its own). Replay of packed pretraining rows",
}


def _example() -> str:
    p = task.make_problem("example", "3+8*2-5")
    return task.format_prompt(p.question) + p.completion


def _settings(quick: bool, scale: str, seed: int, prm_recipe: str) -> TestbedSettings:
    try:
        return TestbedSettings(quick=quick, scale=scale, seed=seed, prm_recipe=prm_recipe)
    except ValueError as exc:
        raise PlannerError(str(exc)) from None


def _check_out(out: Path, run_key: str) -> dict | None:
    """The manifest already in `out` when it holds this run; error if it holds another run."""
    ensure_writable_dir(out)
    man = out / MANIFEST
    if man.exists():
        try:
            existing = json.loads(man.read_text())
        except (OSError, ValueError) as exc:
            raise PlannerError(
                f"{man}: unreadable manifest ({exc}); choose an empty --out"
            ) from None
        if existing.get("run_key") != run_key:
            raise PlannerError(
                f"{out} holds another testbed run's models (run_key {existing.get('run_key')}, "
                f"seed {existing.get('seed')}, scale {existing.get('scale')}, quick "
                f"{existing.get('quick')}); "
                "choose an empty directory or remove it"
            )
        if all((out / d / "config.json").exists() for d in MODEL_DIRS):
            return existing
        return None
    stray = [d for d in MODEL_DIRS if (out / d).exists()]
    if stray:
        raise PlannerError(
            f"{out} holds model directories ({', '.join(stray)}) without a testbed manifest; "
            "choose an empty directory"
        )
    return None


def train_testbed(
    out_dir: str | os.PathLike[str],
    *,
    quick: bool = False,
    scale: str = "default",
    seed: int = 0,
    progress: bool = True,
    prm_recipe: str = "",
) -> dict:
    """Train (or fetch from the cache) the testbed and write it to `out_dir`; returns the manifest.
    `prm_recipe` names the PRM's recipe (`settings.PRM_RECIPES`; empty: the scale's default,
    `settings.DEFAULT_PRM_RECIPE`).

    `out_dir` gets policy/, large/, prm/, reviser/ (each loadable with
    `AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained`) and manifest.json.
    """
    settings = _settings(quick, scale, seed, prm_recipe)
    out = Path(out_dir)
    existing = _check_out(out, settings.run_key())
    if existing is not None:
        return existing
    run_dir = ensure_testbed(
        quick=quick, scale=scale, seed=seed, progress=progress, prm_recipe=prm_recipe
    )
    for name in MODEL_DIRS:
        dest = out / name
        tmp = out / f".{name}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        _copy_tree(run_dir / name, tmp)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    text = (run_dir / MANIFEST).read_text()
    atomic_write_text(out / MANIFEST, text)  # written last: its presence means the copy is whole
    return json.loads(text)
