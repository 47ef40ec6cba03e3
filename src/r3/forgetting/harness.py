"""`r3 forgetting`: lm-evaluation-harness on each model, loaded as `r3 eval` loads it, into one
`RunFolder` whose fingerprint holds the settings every model shares, so the table never compares models
scored differently. `forgetting.json` (every metric with its standard error, per model and task) is
rewritten after every model, and a stored model is not evaluated again: an interrupted run continues.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from r3 import rundir
from r3.errors import R3Error
from r3.forgetting.report import write_forgetting_report
from r3.rundir import RunFolder
from r3.threads import ThreadFields

#: lm-eval task folders shipped with R3 (`r3_basics`: a local task that needs no download).
BUILTIN_TASKS_DIR = Path(__file__).with_name("lm_eval_tasks")
SUMMARY_FILE = "forgetting.json"
#: What `--overwrite` removes (with run.json); lm-eval's files under `lm_eval/` are left alone.
OWNED_FILES = (SUMMARY_FILE, "forgetting.md", "forgetting.png")


@dataclass
class ForgettingConfig(ThreadFields):
    """Options of `r3 forgetting` (YAML via `--config`, any field as a flag)."""

    models: list[str] = field(
        default_factory=list,
        metadata={"help": "models to compare, the first is the reference: hub ids, folders, LoRA adapters"},
    )
    labels: list[str] = field(default_factory=list, metadata={"help": "a name per model (default: folders)"})
    tasks: str = field(
        default="r3_basics",
        metadata={"help": "lm-eval tasks, comma-separated (r3_basics is local; gsm8k, ... need the hub)"},
    )
    include_path: list[str] = field(default_factory=list, metadata={"help": "more lm-eval YAML task folders"})
    output_dir: str = field(default="runs/forgetting", metadata={"help": "where the table and files go"})
    limit: float | None = field(
        default=None, metadata={"help": "lm-eval's --limit: examples per task (or a fraction if < 1)"}
    )
    num_fewshot: int | None = field(default=None, metadata={"help": "lm-eval's --num_fewshot"})
    batch_size: str = field(default="1", metadata={"help": "lm-eval's batch size (a number or 'auto')"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda or cuda:N (default: cuda if any)"})
    dtype: str = field(default="auto", metadata={"help": "auto, float32, bfloat16 or float16"})
    apply_chat_template: bool = field(default=False, metadata={"help": "lm-eval's --apply_chat_template"})
    seed: int = field(default=0, metadata={"help": "lm-eval's random, numpy, torch and few-shot seeds"})
    overwrite: bool = field(
        default=False,
        metadata={"help": "start afresh, even in a folder run with other settings: evaluate every model"},
    )

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("--models: give at least one model (the first is the reference)")
        if self.labels and len(self.labels) != len(self.models):
            raise ValueError(f"--labels: {len(self.labels)} names for {len(self.models)} models")
        if not self.task_list:
            raise ValueError("--tasks: give at least one lm-eval task name")
        if len(set(self.model_labels)) != len(self.model_labels):
            raise ValueError("two models have the same label; give --labels")

    @property
    def task_list(self) -> list[str]:
        return [t.strip() for t in self.tasks.split(",") if t.strip()]

    @property
    def model_labels(self) -> list[str]:
        return list(self.labels) or [Path(m).name or m for m in self.models]

    def run_settings(self) -> dict[str, Any]:
        """What decides every model's scores alike: the folder's fingerprint. Not the models (a folder
        gains them run by run, each kept with its settings in `forgetting.json`), batch size or device."""
        return {
            "tasks": self.task_list,
            "include_path": [str(Path(p).resolve()) for p in self.include_path],
            "limit": self.limit,
            "num_fewshot": self.num_fewshot,
            "dtype": self.dtype,
            "apply_chat_template": self.apply_chat_template,
            "seed": self.seed,
        }


def scores_of(results: dict[str, Any]) -> dict[str, dict[str, dict[str, float | None]]]:
    """`{task: {metric: {"value", "stderr"}}}` from lm-eval's results: every `metric,filter` entry
    that is a number (its `metric_stderr,filter` beside it, None when lm-eval gave none)."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for task, entries in results.get("results", {}).items():
        metrics: dict[str, dict[str, float | None]] = {}
        for key, value in entries.items():
            if "," not in key or "_stderr" in key or not isinstance(value, int | float):
                continue
            name, filt = key.split(",", 1)
            stderr = entries.get(f"{name}_stderr,{filt}")
            label = name if filt == "none" else f"{name} ({filt})"
            metrics[label] = {
                "value": float(value),
                "stderr": float(stderr) if isinstance(stderr, int | float) else None,
            }
        if metrics:
            out[task] = metrics
    return out


def _load_summary(run: RunFolder) -> dict[str, Any]:
    """The summary of the runs into this folder so far (none when it is new or was started afresh)."""
    path = run.path(SUMMARY_FILE)
    if not run.resumed or not path.is_file():
        return {"models": {}}
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        summary = None
    if not isinstance(summary, dict) or not isinstance(summary.get("models"), dict):
        raise R3Error(f"{path}: not a summary written by r3 forgetting; delete it or pass --overwrite true")
    return summary


def task_manager(config: ForgettingConfig) -> Any:
    """lm-eval's `TaskManager` over its tasks, R3's and `--include_path`, with every `--tasks` name
    checked: a mistyped name is one line before any model loads or any file is written."""
    try:
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise R3Error(
            "r3 forgetting needs lm-evaluation-harness: pip install 'reflect-retry-reward[forgetting]'"
        ) from None
    manager = TaskManager(include_path=[str(BUILTIN_TASKS_DIR), *config.include_path])
    unknown = [t for t in config.task_list if t not in manager.all_tasks]
    if unknown:
        raise R3Error(f"--tasks: lm-eval knows no task {', '.join(repr(t) for t in unknown)}")
    return manager


def evaluate_model(
    config: ForgettingConfig, model: str, label: str, out: Path, manager: Any
) -> dict[str, Any]:
    """Run lm-eval on one model with `manager` (`task_manager`), saving its files under
    `out/lm_eval/<label>/`."""
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.models.huggingface import HFLM

    from r3.models import load_model_and_tokenizer, pick_device

    device = pick_device(config.device)
    lm, tokenizer = load_model_and_tokenizer(model, device=device, dtype=config.dtype)
    tokenizer.padding_side = "right"  # lm-eval pads its own batches; generation's left padding is ours
    batch = config.batch_size if config.batch_size == "auto" else int(config.batch_size)
    harness_model = HFLM(pretrained=lm, tokenizer=tokenizer, batch_size=batch, device=device)
    tracker = EvaluationTracker(output_path=str(out / "lm_eval" / label))
    seeds = {f"{kind}random_seed": config.seed for kind in ("", "numpy_", "torch_", "fewshot_")}
    try:
        results = simple_evaluate(
            model=harness_model,
            tasks=config.task_list,
            num_fewshot=config.num_fewshot,
            limit=config.limit,
            log_samples=True,
            evaluation_tracker=tracker,
            apply_chat_template=config.apply_chat_template,
            task_manager=manager,
            **seeds,
        )
    except (ConnectionError, OSError) as exc:  # a task whose data must come from the hub, offline
        raise R3Error(f"lm-eval could not load a task's data ({str(exc).splitlines()[0]})") from None
    if results is None:  # only on ranks other than 0 in a distributed run
        return {}
    samples = results.pop("samples", {})
    tracker.general_config_tracker.model_name = label
    tracker.save_results_aggregated(results=results, samples=samples)
    for task_name in results.get("configs", {}):
        if task_name in samples:
            tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    return scores_of(results)


def run_forgetting(config: ForgettingConfig, progress: bool = True) -> dict[str, Any]:
    """Evaluate each model (reusing stored results with the same settings) and write the report."""
    identity = rundir.fingerprint("forgetting", config.run_settings())
    options = {"command": "forgetting", "overwrite": config.overwrite}
    RunFolder.open(config.output_dir, identity, OWNED_FILES, check_only=True, **options)  # before lm-eval
    manager = task_manager(config)
    with RunFolder.open(config.output_dir, identity, OWNED_FILES, **options) as run:
        summary = _load_summary(run)
        for model, label in zip(config.models, config.model_labels, strict=True):
            settings = {"model": model, **config.run_settings()}  # a stored result is reused if equal
            stored = summary["models"].get(label)
            if stored and stored.get("settings") == settings:
                if progress:
                    print(f"r3 forgetting: {label}: results stored, not evaluated again", flush=True)
                continue
            if progress:
                print(f"r3 forgetting: {label}: lm-eval on {', '.join(config.task_list)}", flush=True)
            scores = evaluate_model(config, model, label, run.folder, manager)
            summary["models"][label] = {"settings": settings, "scores": scores}
            run.write_json(SUMMARY_FILE, summary)  # after every model: an interruption loses one at most
        summary["order"] = config.model_labels
        summary["config"] = asdict(config)
        run.write_json(SUMMARY_FILE, summary)
        write_forgetting_report(summary, run.folder)
    return summary
