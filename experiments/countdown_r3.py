"""The learning experiment: does R3 make a warm-started SmolLM2-135M better at Countdown, with controls?

    python experiments/countdown_r3.py --config experiments/countdown.yaml            # `make experiment`
    python experiments/countdown_r3.py --config experiments/demo.yaml --output runs/demo   # `make demo`

Every step is an `r3` command, run as a user would run it, into one output folder:

    warmstart/                the warm-started model (`r3 sft`, cached in $R3_CACHE/warmstart/<key>)
    mine/                     `r3 mine --full` of the warm-started model's failures (mining seed)
    trained/                  `r3 train`, reward = the retry's success (R3)
    trained-shuffled/         the same training with rewards shuffled within each group (control)
    trained-grpo/             plain GRPO on first attempts of the same queries, same optimizer and
                              steps (`r3 train --mode grpo`): the bar R3 must clear
    trained-combined/         where the config has a `combined:` section: first attempts and
                              reflections trained group by group in one run (`r3 train --mode combined`)
    eval-<model>/             `r3 eval`, greedy, reflect + retry, on the evaluation seed
    eval-<model>-step<N>/     the same of a trained model's checkpoint-<N>, for each N in `eval.checkpoints`
                              (with `save_steps` dividing N and `save_total_limit` keeping it)
    eval-<model>-resample/    `r3 eval --second-try resample` at a temperature > 0: a second attempt
                              without reflection (how much of a second-try gain needs a reflection?),
                              for the models in `eval.resample_models` (default: all)
    report/                   `r3 report` over the models, `experiment.md` (table, tests), curves
    forgetting/               `r3 forgetting`: lm-eval's local r3_basics task on the vanilla model and
                              each of the above (what training cost elsewhere)

    logs/<step>.log           each step's `r3` output; commands.log lists the commands and their exits

Steps run in order, model by model (its training, its evaluations), each after the steps it reads. With
`jobs` > 1 (the config's `jobs`, or `--jobs`) independent ones run side by side, each on its share of
the cores; the warm-start, the report and `r3 forgetting` always run alone on every core. On the
2-core machine this was measured on (AMD EPYC), two one-thread steps side by side did about 1.2-1.3
times the work of one two-thread step: an R3 training step took 95 s beside an evaluation against
56-70 s alone, a greedy evaluation of 500 problems 24 min beside mining against 14.4 min alone.
`make experiment` runs 2.

Seeds: SFT rows, mining rows and evaluation rows come from disjoint seeds of Countdown's generator.
`--split validation` evaluates on the validation seed (for choosing settings); `--split heldout` (the
default) on the held-out seed, which no setting was tuned on. Each step is skipped or resumed when its
output exists, so an interrupted run continues where it stopped.

Another run of the same warm-start (a second training seed, another variant) can take the first one's
mining (`mine.reuse: <run folder>`) and its warm-start evaluations (`eval.reuse: <run folder>`, checked
to be of the same weights and the same settings) instead of running them again. `r3: false` and
`control: false` leave R3 and its control out of a run of other variants (`grpo:`, `combined:`).
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import filecmp
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from experiment_report import LABELS, write_experiment_report  # beside this file

from r3.provenance import versions

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("warmstart", "trained", "shuffled", "grpo", "combined")
#: Each trained model: its folder and what its `r3 train` differs in (on top of the config's `train`).
VARIANTS = {
    "trained": ("trained", {"reward_funcs": "retry_success"}),
    "shuffled": ("trained-shuffled", {"reward_funcs": "retry_success_shuffled"}),
    "grpo": ("trained-grpo", {"mode": "grpo", "reward_funcs": "attempt_success"}),
    "combined": ("trained-combined", {"mode": "combined", "reward_funcs": "turn_success"}),
}


#: Threads each `r3` process may use (OMP_NUM_THREADS); None leaves torch's default (every core).
#: Set by `run_steps` for the steps it runs side by side; thread-local so that each worker has its own.
_threads = threading.local()
_commands_lock = threading.Lock()
#: The `r3` processes running now, so that an interrupt of the driver reaches them (a terminal's Ctrl-C
#: reaches them anyway; `kill -INT <driver>` or a scheduler's stop does not).
_children: set[subprocess.Popen[bytes]] = set()
#: Seconds the running `r3` commands get to stop after SIGTERM before they are killed. An `r3` command
#: takes SIGTERM as Ctrl-C (SIGINT would not do: a command started from a shell's background job
#: ignores it); `r3 train` first finishes the step in flight and saves a checkpoint (about half a
#: minute for an R3 step on 2 CPU cores). Eval and mining rows are synced as written.
STOP_GRACE_S = 300.0


def stop_children() -> None:
    """Stop the running `r3` commands: SIGTERM, then SIGKILL to any still running after
    `STOP_GRACE_S`. Returns once they have exited, so nothing runs on without the driver."""
    with _commands_lock:
        running = list(_children)
    for child in running:
        child.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for child in running:
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def stop_on_sigterm() -> None:
    """Handle SIGTERM (`kill`, `timeout`, a scheduler's stop) as Ctrl-C: the running commands are
    stopped and the driver exits, instead of dying at once and leaving them running."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def r3(*args: str, log: Path) -> None:
    """Run one `r3` command; its output goes to `log`, its command line and exit to the console and to
    `commands.log` beside the log folder."""
    command = [sys.executable, "-m", "r3.cli", *args]
    line = f"$ r3 {' '.join(args)}"
    threads = getattr(_threads, "count", None)
    env = dict(os.environ)
    if threads is not None and "OMP_NUM_THREADS" not in os.environ:  # a user's setting wins
        env["OMP_NUM_THREADS"] = str(threads)
    log.parent.mkdir(parents=True, exist_ok=True)
    commands = log.parent.parent / "commands.log"
    with _commands_lock:
        print(f"\n{line}", flush=True)
        with commands.open("a") as handle:
            handle.write(f"{line}\n# log: {log}\n")
    started = time.monotonic()
    with log.open("a") as handle:
        handle.write(f"{line}\n")
        handle.flush()
        proc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        with _commands_lock:
            _children.add(proc)
        try:
            proc.wait()
        except KeyboardInterrupt:  # in the main thread (the warm-start, the report): stop the command
            stop_children()
            raise
        finally:
            with _commands_lock:
                _children.discard(proc)
    took = time.monotonic() - started
    with _commands_lock, commands.open("a") as handle:
        handle.write(f"# exit {proc.returncode} after {took:.0f} s: r3 {args[0]} -> {log.name}\n")
    if proc.returncode != 0:
        sys.exit(f"experiment: `r3 {args[0]}` failed (exit {proc.returncode}); see {log}")
    print(f"  done in {took:.0f} s: {log.stem}", flush=True)


@dataclass(frozen=True)
class Step:
    """One step of the experiment: `run(log)` once every step named in `after` has finished."""

    name: str
    run: Callable[[Path], Any]
    after: tuple[str, ...] = ()


def run_steps(steps: list[Step], jobs: int, logs: Path) -> None:
    """Run `steps`, at most `jobs` at a time, each once its `after` steps are done; among the ready ones
    the earliest in the list starts first (so list the long chain first). With jobs > 1 each process
    gets cores // jobs threads. A failed step starts nothing new; the running ones finish (their work
    is kept, and a rerun resumes them), then the failure is raised. An interrupt (Ctrl-C, SIGINT, or
    SIGTERM when run as a script) stops the running `r3` commands (`stop_children`), then is raised."""
    names = {step.name for step in steps}
    for step in steps:
        missing = [name for name in step.after if name not in names]
        if missing:
            raise ValueError(f"step {step.name!r} waits for unknown steps {missing}")
    threads = None if jobs <= 1 else max(1, (os.cpu_count() or 1) // jobs)

    def work(step: Step) -> None:
        _threads.count = threads
        step.run(logs / f"{step.name}.log")

    pending = list(steps)
    done: set[str] = set()
    running: dict[futures.Future[None], Step] = {}
    with futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        try:
            failure = _run_ready(pending, running, done, jobs, pool, work)
        except KeyboardInterrupt:
            stop_children()
            raise
    if failure is not None:
        raise failure


def _run_ready(
    pending: list[Step],
    running: dict[futures.Future[None], Step],
    done: set[str],
    jobs: int,
    pool: futures.ThreadPoolExecutor,
    work: Callable[[Step], None],
) -> BaseException | None:
    """`run_steps`' loop: start what is ready, wait for one to finish, until all are done or one failed
    and the rest have finished. Returns the first failure."""
    failure: BaseException | None = None
    while pending or running:
        if failure is None:
            for step in [s for s in pending if all(a in done for a in s.after)]:
                if len(running) >= max(1, jobs):
                    break
                pending.remove(step)
                running[pool.submit(work, step)] = step
        if not running:
            if failure is None:  # nothing can start: a cycle in `after`
                raise ValueError(f"steps wait on each other: {[s.name for s in pending]}")
            break
        finished, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
        for future in finished:
            step = running.pop(future)
            error = future.exception()
            if error is None:
                done.add(step.name)
            elif failure is None:
                failure = error
    return failure


def task_flags(cfg: dict[str, Any]) -> list[str]:
    return [f"--task-arg={k}={v}" for k, v in cfg["task_args"].items()]


def link_tree(source: Path, target: Path) -> None:
    """`target` as a copy of `source` made of hard links (no second 500 MB copy of the weights)."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(source, tmp, copy_function=os.link)
    except OSError:  # another file system: a real copy
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp)
    tmp.rename(target)


def warmstart(cfg: dict[str, Any], out: Path, log: Path) -> Path:
    """The warm-started model, trained once per settings and cached like the converted model."""
    target = out / "warmstart"
    if (target / "config.json").is_file():
        return target
    # `sft.task_args`: the warm-start's own problems, when the experiment's task differs from them (a
    # harder or easier Countdown on the same warm-start); the cache key is unchanged where it is absent.
    sft = {k: v for k, v in cfg["sft"].items() if k != "task_args"}
    task_args = cfg["sft"].get("task_args", cfg["task_args"])
    key = hashlib.sha256(json.dumps([sft, task_args], sort_keys=True).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("R3_CACHE", Path.home() / ".cache" / "r3")) / "warmstart" / key
    check_warmstart_stamp(cache, ROOT / sft["recipe"])
    if not (cache / SFT_SUMMARY).is_file():
        flags = [f"--{k}={v}" for k, v in sft.items() if k != "recipe"]
        r3(
            "sft", "--config", sft["recipe"], "--output_dir", str(cache), "--resume", "true",
            "--task_args", json.dumps(task_args), *flags, log=log,
        )  # fmt: skip
    link_tree(cache, target)
    return target


#: Beside a cached warm-start: what trained it. Its key names the recipe by path, not by content (a
#: moved key would retrain every user's cache), so the recipe's content is checked against this.
WARMSTART_STAMP = "r3-warmstart.json"
#: The warm-start's weights, compared when another run's evaluation of it is reused (`eval.reuse`).
WEIGHTS = "model.safetensors"
#: What `r3 sft` and `r3 train` write last, after the model: a training is done when it is there (a
#: `config.json` alone may sit beside weights a kill cut short). = r3.training.{sft,trainer}.SUMMARY_FILE,
#: not imported: the driver does not load torch.
SFT_SUMMARY = "r3_sft.json"
TRAIN_SUMMARY = "r3_training.json"


def check_warmstart_stamp(cache: Path, recipe: Path) -> None:
    """Keep `cache` only if it was trained from `recipe` as it reads now: a cache from another version
    of the recipe (or an unfinished one) is removed, to be trained again, with one line saying so. A
    cache from before stamps existed is taken as trained from this recipe and stamped (the shipped
    recipes had not changed since). Other package versions than the cache's are only reported: they move
    a result by a few sampled tokens, not by what was trained."""
    if not recipe.is_file():
        sys.exit(f"experiment: sft.recipe: {recipe} not found")
    digest = hashlib.sha256(recipe.read_bytes()).hexdigest()
    stamp = cache / WARMSTART_STAMP
    now = {"recipe": recipe.name, "recipe_sha256": digest, "versions": versions()}
    if stamp.is_file():
        made = json.loads(stamp.read_text())
        if made.get("recipe_sha256") == digest:
            old = made.get("versions", {})
            changed = sorted(
                k for k in old.keys() | now["versions"].keys() if old.get(k) != now["versions"].get(k)
            )
            if changed:
                print(f"experiment: reusing {cache}, trained with other versions of {', '.join(changed)}")
            return
        print(f"experiment: {cache} was trained from another version of {recipe.name}; training it again")
        shutil.rmtree(cache)
    elif (cache / SFT_SUMMARY).is_file():
        now["adopted"] = True  # cached before stamps existed: recorded as found
    cache.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(now, indent=1) + "\n")


def evaluate(cfg: dict[str, Any], model: Path, folder: Path, seed: int, log: Path, resample: bool) -> None:
    ev = cfg["eval"]
    flags = [
        "eval", "--model", str(model), "--output-dir", str(folder), "--seed", str(seed),
        "--limit", str(ev["limit"]), "--max-new-tokens", str(ev["max_new_tokens"]),
        "--reflection-max-new-tokens", str(ev["reflection_max_new_tokens"]),
        "--batch-size", str(ev["batch_size"]), "--device", "cpu", "--no-progress", *task_flags(cfg),
    ]  # fmt: skip
    if resample:
        flags += ["--second-try", "resample", "--temperature", str(ev["resample_temperature"])]
    r3(*flags, log=log)


def reuse_evaluation(cfg: dict[str, Any], out: Path, folder: str) -> None:
    """`eval.reuse: <run folder>`: the warm-start's evaluation `folder` copied from another run of the
    same warm-start (another training seed or variant on the same problems), so that it is not run
    again. The copy is taken only when that run's warm-start is this run's model (the same weights) and
    its evaluation was of that warm-start; its `run.json` then names this run's warm-start, and the
    evaluation step that follows is `r3 eval` into it as usual: its fingerprint check refuses the copy
    if any other setting differs (seed, limit, token budgets, the problems), and otherwise finds every
    row done."""
    reuse = cfg["eval"].get("reuse")
    target = out / folder
    if not reuse or (target / "results.json").is_file():
        return
    run = ROOT / reuse
    source = run / folder
    if not (source / "results.json").is_file():
        sys.exit(f"experiment: eval.reuse: {source / 'results.json'} not found (run that evaluation first)")
    ours, theirs = out / "warmstart" / WEIGHTS, run / "warmstart" / WEIGHTS
    if not theirs.is_file() or not (ours.samefile(theirs) or filecmp.cmp(ours, theirs, shallow=False)):
        sys.exit(f"experiment: eval.reuse: {run / 'warmstart'} is not this run's warm-start")
    fingerprint = json.loads((source / "run.json").read_text())
    if fingerprint.get("model") != str((run / "warmstart").resolve()):
        sys.exit(f"experiment: eval.reuse: {source} evaluated {fingerprint.get('model')}, not its warm-start")
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns(".lock"))  # a copy: r3 eval rewrites files
    fingerprint["model"] = str((out / "warmstart").resolve())
    (tmp / "run.json").write_text(json.dumps(fingerprint, indent=1) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    print(f"experiment: eval.reuse: {folder} copied from {run}")


def failures_file(cfg: dict[str, Any], out: Path) -> Path:
    """Where the trainings read the mined failures: this run's mining, or another run's (`mine.reuse`)."""
    reuse = cfg["mine"].get("reuse")
    if not reuse:
        return out / "mine" / "failures.jsonl"
    failures = ROOT / reuse / "mine" / "failures.jsonl"
    if not failures.is_file():
        sys.exit(f"experiment: mine.reuse: {failures} not found (run that experiment first)")
    return failures


def mine(cfg: dict[str, Any], model: Path, out: Path, log: Path) -> None:
    """`r3 mine` of the warm-start into `out/mine`; the trainings find its failures via `failures_file`,
    which also serves `mine.reuse`."""
    mi = cfg["mine"]
    folder = out / "mine"
    r3(
        "mine", "--model", str(model), "--output-dir", str(folder), "--seed", str(cfg["seeds"]["mine"]),
        "--limit", str(mi["limit"]), "--budget", str(mi["budget"]), "--round-size", str(mi["budget"]),
        "--full", "--keep", str(mi["keep"]), "--max-new-tokens", str(cfg["eval"]["max_new_tokens"]),
        "--window", "8", "--batch-size", str(8 * mi["budget"]),  # a window's samples in one batch
        "--temperature", str(mi["temperature"]), "--device", "cpu", "--no-progress", *task_flags(cfg),
        *screen_flags(cfg), log=log,
    )  # fmt: skip


def screen_flags(cfg: dict[str, Any]) -> list[str]:
    """`r3 mine --screen K`: each kept failure scored by K sampled reflections with their retries
    (the retry sampled as training samples it), for `r3 train --selection learnable`."""
    mi = cfg["mine"]
    if not mi.get("screen"):
        return []
    return [
        "--screen", str(mi["screen"]), "--screen-retry-temperature", str(mi["screen_retry_temperature"]),
        "--reflection-max-new-tokens", str(cfg["eval"]["reflection_max_new_tokens"]),
    ]  # fmt: skip


def train(cfg: dict[str, Any], model: Path, failures: Path, name: str, out: Path, log: Path) -> Path:
    """`r3 train` of one variant: the config's `train` fields, the variant's own (`VARIANTS`), then
    the config's `<name>` section (e.g. `grpo:` sets plain GRPO's completion budget and batch)."""
    folder_name, own = VARIANTS[name]
    folder = out / folder_name
    if (folder / TRAIN_SUMMARY).is_file():
        return folder
    fields = {**cfg["train"], **own, **(cfg.get(name) or {})}
    flags = [f"--{k}={v}" for k, v in fields.items() if k != "recipe"]
    r3(
        "train", "--config", fields["recipe"], "--model", str(model), "--failures", str(failures),
        "--output_dir", str(folder), "--resume", "true", "--task_args", json.dumps(cfg["task_args"]),
        *flags, log=log,
    )  # fmt: skip
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(ROOT / "experiments" / "countdown.yaml"))
    parser.add_argument("--output", default=None, help="output folder (default: the config's)")
    parser.add_argument("--split", choices=["validation", "heldout"], default="heldout")
    parser.add_argument(
        "--jobs", type=int, default=None, help="steps run side by side (default: the config's jobs, else 1)"
    )
    args = parser.parse_args(argv)
    cfg = yaml.safe_load(Path(args.config).read_text())
    out = Path(args.output or cfg["output"])
    out.mkdir(parents=True, exist_ok=True)
    jobs = args.jobs if args.jobs is not None else int(cfg.get("jobs", 1))
    if jobs < 1:
        sys.exit(f"experiment: jobs must be at least 1, got {jobs}")
    seed = cfg["seeds"][args.split]
    suffix = "" if args.split == "heldout" else "-validation"
    started = time.monotonic()

    logs = out / "logs"
    models = {"warmstart": warmstart(cfg, out, logs / "warmstart.log")}
    names = ["warmstart"]
    if cfg.get("r3", True):  # `r3: false`: a run of other variants only, beside an earlier R3 run
        names.append("trained")
    if cfg.get("control", True):  # the demo has no control, to stay within its time budget
        names.append("shuffled")
    if cfg.get("grpo") is not None:  # plain GRPO at equal compute: its section sets what differs
        names.append("grpo")
    if cfg.get("combined") is not None:  # the combined variant (both turns trained): its section
        names.append("combined")
    failures = failures_file(cfg, out)
    resampled = cfg["eval"].get("resample_models", names) if cfg["eval"].get("resample_temperature") else []

    def evaluation(name: str, folder: str, resample: bool) -> Callable[[Path], None]:
        """One evaluation step; the warm-start's may first be copied from another run (`eval.reuse`)."""

        def run(log: Path) -> None:
            if name == "warmstart":
                reuse_evaluation(cfg, out, folder)
            evaluate(cfg, models[name], out / folder, seed, log, resample)

        return run

    def checkpoint_evaluation(name: str, step: int, folder: str) -> Callable[[Path], None]:
        """The greedy evaluation of a trained model's `checkpoint-<step>` (a LoRA adapter `r3 eval` loads)."""

        def run(log: Path) -> None:
            checkpoint = models[name] / f"checkpoint-{step}"
            if not checkpoint.is_dir():
                sys.exit(f"experiment: eval.checkpoints: {checkpoint} not found (see save_steps)")
            evaluate(cfg, checkpoint, out / folder, seed, log, False)

        return run

    def evaluations(name: str) -> list[Step]:
        """A model's greedy evaluation, then its resample one (where configured), after its training;
        then its checkpoints' greedy evaluations (`eval.checkpoints`: the model against steps)."""
        found = []
        for resample in (False, True):
            if resample and name not in resampled:
                continue
            folder = f"eval-{name}{'-resample' if resample else ''}{suffix}"
            after = () if name == "warmstart" else (f"train-{name}",)
            found.append(Step(folder, evaluation(name, folder, resample), after))
        for step in cfg["eval"].get("checkpoints", []) if name != "warmstart" else []:
            folder = f"eval-{name}-step{step}{suffix}"
            found.append(Step(folder, checkpoint_evaluation(name, int(step), folder), (f"train-{name}",)))
        return found

    # Listed model by model (train, evaluate, resample), so that with one job each model's numbers are
    # complete before the next model starts: an interrupted run has whole results to look at.
    steps = (
        []
        if cfg["mine"].get("reuse")
        else [Step("mine", lambda log: mine(cfg, models["warmstart"], out, log))]
    )
    after_mine = tuple(step.name for step in steps)
    steps += evaluations("warmstart")
    for name in names[1:]:
        models[name] = out / VARIANTS[name][0]
        run = partial(lambda log, n: train(cfg, models["warmstart"], failures, n, out, log), n=name)
        steps.append(Step(f"train-{name}", run, after_mine))
        steps += evaluations(name)
    run_steps(steps, jobs, logs)

    report = out / f"report{suffix}"
    r3(
        "report", *[str(out / f"eval-{name}{suffix}") for name in names],
        "--labels", *[LABELS[name] for name in names], "--output-dir", str(report), "--html",
        log=logs / f"report{suffix}.log",
    )  # fmt: skip
    if cfg.get("forgetting"):
        r3(
            "forgetting", "--models", "embedded", *[str(models[name]) for name in names],
            "--labels", "vanilla", *[LABELS[name] for name in names], "--tasks", cfg["forgetting"]["tasks"],
            "--device", "cpu", "--output_dir", str(out / "forgetting"), log=logs / "forgetting.log",
        )  # fmt: skip
    text = write_experiment_report(
        out, report, suffix, split=args.split, seed=seed, config=cfg,
        wall_seconds=time.monotonic() - started,
    )  # fmt: skip
    print("\n" + text)
    return 0


if __name__ == "__main__":
    stop_on_sigterm()
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print(
            "experiment: interrupted; what finished is kept, run the same command again to resume",
            file=sys.stderr,
        )
        sys.exit(130)
