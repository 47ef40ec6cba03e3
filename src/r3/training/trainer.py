"""Build TRL's `GRPOTrainer` for R3, run it, and save the result.

`build_trainer` takes optional ready-made pieces (model, tokenizer, task, records, rewards, engine) so
that tests and benchmarks can swap any of them; everything else comes from the config."""

from __future__ import annotations

import json
import random
import sys
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from r3.errors import R3Error
from r3.generation.base import derive_seed
from r3.mining.records import FailureRecord, read_failures
from r3.tasks.base import Task
from r3.training.config import R3Config
from r3.training.console import use_step_lines
from r3.training.dataset import build_dataset
from r3.training.folder import training_folder
from r3.training.interrupt import train_until_stopped, uninterrupted_save
from r3.training.rewards import RewardFunc, resolve_rewards
from r3.training.rollout import Engine, R3Rollout

SUMMARY_FILE = "r3_training.json"


@dataclass
class TrainResult:
    """Where the model went and what the run logged."""

    output_dir: str
    global_step: int
    num_prompts: int
    log_history: list[dict[str, Any]] = field(default_factory=list)
    adapter_dir: str | None = None


def load_task(config: R3Config) -> Task:
    from r3.tasks.registry import get_task

    return get_task(config.task, **config.task_options())


def load_records(config: R3Config, task: Task) -> list[FailureRecord]:
    if not config.failures:
        raise R3Error("no failures file: pass --failures FILE (written by `r3 mine`)")
    records = read_failures(config.failures, task)
    if config.selection == "learnable":
        records = learnable_records(records, config.failures, config.retry_temperature)
    if config.min_successes:
        records = [r for r in records if r.successes >= config.min_successes]
        if not records:
            raise R3Error(
                f"{config.failures}: no query was solved at least {config.min_successes} times while mining "
                "(min_successes); lower it, or mine with `r3 mine --full` for success counts"
            )
    return records[: config.limit] if config.limit is not None else records


def learnable_records(
    records: list[FailureRecord], source: str, retry_temperature: float
) -> list[FailureRecord]:
    """Each record with only its failed attempts whose screened retries had mixed outcomes; records
    left with none are dropped. Refuses an unscreened file, and one screened at another retry temperature."""
    from r3.mining.records import check_screen_temperature, learnable

    if all(learnable(a) is None for r in records for a in r.failed_attempts):
        raise R3Error(f"{source}: selection learnable needs a screened failures file (`r3 mine --screen K`)")
    check_screen_temperature(records, retry_temperature, source)
    kept = [replace(r, failed_attempts=[a for a in r.failed_attempts if learnable(a)]) for r in records]
    kept = [record for record in kept if record.failed_attempts]
    if not kept:
        raise R3Error(f"{source}: no screened attempt had mixed retry outcomes (selection learnable)")
    return kept


def load_policy(config: R3Config) -> Any:
    """The model to train, in float32 on CPU (bfloat16 when `bf16` is on), unless `dtype` says otherwise."""
    from transformers import AutoModelForCausalLM

    from r3.models import resolve_model, torch_dtype

    name = resolve_model(config.model)
    dtype = torch_dtype(config.dtype, default="bfloat16" if config.bf16 else "float32")
    # `ModelConfig.attn_implementation` as TRL's scripts pass it, under `model_init_kwargs`.
    kwargs = {"attn_implementation": config.attn_implementation} if config.attn_implementation else {}
    kwargs.update(config.model_init_kwargs or {})
    try:
        return AutoModelForCausalLM.from_pretrained(name, dtype=dtype, **kwargs)
    except OSError as exc:
        raise R3Error(f"cannot load model '{name}': {str(exc).splitlines()[0]}") from None


def check_generation_setup(config: R3Config) -> None:
    """The vLLM settings the R3 engines support: any server; colocated, tensor parallel size 1 (each
    process samples its own prompts) and sleep mode off (TRL wakes vLLM only in its own generation step,
    which a `rollout_func` replaces)."""
    if not config.use_vllm or config.vllm_mode == "server":
        return
    if config.vllm_mode != "colocate":
        raise R3Error(f"unknown vllm_mode '{config.vllm_mode}': use colocate or server")
    if config.vllm_tensor_parallel_size != 1 or config.vllm_enable_sleep_mode:
        raise R3Error(
            "R3 with colocated vLLM supports vllm_tensor_parallel_size 1 and vllm_enable_sleep_mode false "
            "(for larger models use vllm_mode: server)"
        )


def build_trainer(
    config: R3Config,
    *,
    model: Any = None,
    tokenizer: Any = None,
    task: Task | None = None,
    records: list[FailureRecord] | None = None,
    reward_funcs: list[RewardFunc] | None = None,
    callbacks: list[Any] | None = None,
    engine: Engine | None = None,
) -> Any:
    """A `GRPOTrainer` whose completions are reflections and whose reward is the retry's success; its
    `rollout_func` is an `R3Rollout`."""
    from trl import GRPOTrainer

    from r3.models import load_tokenizer, ready_for_generation

    check_generation_setup(config)
    task = task or load_task(config)
    records = records if records is not None else load_records(config, task)
    if config.replacements == "unseen":  # TRL's shuffle is off: the pool in an order drawn from the seed
        records = list(records)
        random.Random(derive_seed(config.seed, "pool")).shuffle(records)
    if tokenizer is None:
        tokenizer = load_tokenizer(config.model)
    ready_for_generation(tokenizer)  # a tokenizer passed in is set up as a loaded one
    if model is None:
        model = load_policy(config)
    # Plain GRPO and combined mode sample first attempts at the task prompts, as online mode does.
    first_attempt = "online" if config.mode in ("grpo", "combined") else config.first_attempt
    dataset, index = build_dataset(records, task, tokenizer, first_attempt, config.max_attempts_per_query)
    if index.collisions:
        warnings.warn(
            f"{index.collisions} training prompts render to the same text as a different example; "
            "the first example's verifier is used for them",
            stacklevel=2,
        )
    if config.replacements == "unseen":
        check_unseen_pool(config, len(index.prompts()))
    rollout = R3Rollout(
        task,
        index,
        config.episode_sampling(task),
        first_attempt,
        engine=engine,
        mode=config.mode,
        dynamic_sampling_rounds=config.dynamic_sampling_rounds,
        replacements=config.replacements,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*'rollout_func'.*experimental")
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=reward_funcs
            or resolve_rewards(config.reward_funcs, config.num_generations, config.seed),
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=callbacks,
            peft_config=config.peft_config(),
            rollout_func=rollout,
        )
    use_step_lines(trainer, "train")
    return trainer


def check_unseen_pool(config: R3Config, pool: int) -> None:
    """`replacements: unseen` needs a pool that holds every prompt the run takes from its front and every
    replacement slot at its back (`rollout.replacement_slot`)."""
    if config.max_steps is None or config.max_steps <= 0:
        raise R3Error("replacements unseen needs max_steps (the pool's share is counted from it)")
    group = config.num_generations
    processes = config.world_size
    front = config.max_steps * config.per_device_train_batch_size * config.gradient_accumulation_steps
    front = front * processes // group
    calls = -(-config.gradient_accumulation_steps // config.steps_per_generation)
    groups = config.per_device_train_batch_size * config.steps_per_generation // group
    back = config.max_steps * calls * processes * config.dynamic_sampling_rounds * groups
    if front + back > pool:
        raise R3Error(
            f"replacements unseen: {config.max_steps} steps take up to {front} prompts for training and "
            f"{back} for replacements, and the pool has {pool}; mine more queries or train fewer steps"
        )


def resume_target(config: R3Config) -> str | bool | None:
    """What to pass as `resume_from_checkpoint`: an explicit path, the last checkpoint, or nothing."""
    if config.resume_from_checkpoint or not config.resume:
        return config.resume_from_checkpoint or None
    folder = Path(config.output_dir)
    last = last_complete_checkpoint(folder)
    if last is None:
        print(f"--resume: no checkpoint in {folder} yet, starting from the beginning", file=sys.stderr)
    return last


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest `checkpoint-N` whose `trainer_state.json` (written last) exists: a run killed while
    saving leaves a torn checkpoint that transformers' `get_last_checkpoint` would pick."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    prefix = f"{PREFIX_CHECKPOINT_DIR}-"
    found = [p for p in folder.glob(f"{prefix}*") if p.is_dir() and p.name.removeprefix(prefix).isdigit()]
    for path in sorted(found, key=lambda p: int(p.name.removeprefix(prefix)), reverse=True):
        if (path / "trainer_state.json").is_file():
            return str(path)
        print(f"--resume: skipping incomplete checkpoint {path} (no trainer_state.json)", file=sys.stderr)
    return None


def save_final(trainer: Any, config: R3Config) -> str | None:
    """Save the trained model and tokenizer into `output_dir`: the model, or the LoRA adapter, or with
    `merge_lora` the merged model and the adapter in `output_dir/adapter` (returned, if any)."""
    out = Path(config.output_dir)
    if not config.use_peft:
        trainer.save_model(str(out))
        return None
    adapter_dir = out / "adapter" if config.merge_lora else out
    trainer.save_model(str(adapter_dir))
    if config.merge_lora and trainer.accelerator.is_main_process:
        merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
        merged.save_pretrained(str(out))
        trainer.processing_class.save_pretrained(str(out))
    return str(adapter_dir)


def write_summary_file(trainer: Any, path: Path, fields: dict[str, Any]) -> None:
    """A training's summary (`r3_training.json`, `r3_sft.json`): its settings `fields`, the steps run and
    the log history, on the main process. Written after the model, so its presence says the run finished."""
    if not trainer.accelerator.is_main_process:
        return
    summary = {**fields, "global_step": trainer.state.global_step, "log_history": trainer.state.log_history}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1, default=str))


def write_summary(trainer: Any, config: R3Config, num_prompts: int) -> None:
    names = ("task", "model", "failures", "first_attempt", "mode", "selection", "dynamic_sampling_rounds")
    fields = {name: getattr(config, name) for name in names}
    fields.update(reward_funcs=list(config.reward_funcs), num_prompts=num_prompts)
    write_summary_file(trainer, Path(config.output_dir) / SUMMARY_FILE, fields)


def train(config: R3Config, **pieces: Any) -> TrainResult:
    """Check the output folder, build the trainer (`pieces` go to `build_trainer`), train, save the
    final model, and return a summary."""
    with training_folder(config, "train", SUMMARY_FILE):
        trainer = build_trainer(config, **pieces)
        train_until_stopped(trainer, resume_target(config))
        num_prompts = len(trainer.train_dataset)
        with uninterrupted_save():  # the summary last: its presence says the model beside it is whole
            adapter_dir = save_final(trainer, config)
            write_summary(trainer, config, num_prompts)
    return TrainResult(
        output_dir=str(config.output_dir),
        global_step=trainer.state.global_step,
        num_prompts=num_prompts,
        log_history=list(trainer.state.log_history),
        adapter_dir=adapter_dir,
    )
