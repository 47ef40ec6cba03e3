"""The output folder of `r3 train` and `r3 sft` (`training_folder`): one holding a run's output is
refused until `--resume` (same settings) or `--overwrite` says which is meant. Every config field is a
setting, TRL's included, except `NOT_SETTINGS` and `RUN_LENGTH`; a field one side lacks is not compared.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from r3 import rundir
from r3.rundir import RunFolder

#: What both trainings write into their output folder besides their summary: `--overwrite` removes
#: exactly these (and `run.json`), and any of them present means the folder holds a run's output.
#: TRL's model card (README.md) is left alone: it may be a user's.
OWNED: tuple[str, ...] = (
    "checkpoint-*",
    # the model (transformers' save_pretrained)
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model.bin.index.json",
    # LoRA (PEFT's save_pretrained; `adapter/` with merge_lora)
    "adapter",
    "adapter_config.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
    # the tokenizer and the Trainer's arguments, saved beside the model
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
    "training_args.bin",
    # logs: TRL's completion tables (log_completions) and TensorBoard's default folder
    "completions",
    "runs",
)

#: Fields that do not decide what the model learns, so a resumed run may change them.
NOT_SETTINGS = frozenset(
    {
        # the run's own flags, and aliases of fields that are compared under their other name
        "resume",
        "overwrite",
        "resume_from_checkpoint",
        "model_name_or_path",  # = model
        "reflection_max_new_tokens",  # = max_completion_length
        "merge_lora",  # how the final model is saved, not what it learned
        "output_dir",
        "push_to_hub",
        "hub_token",
        "hub_private_repo",
        "hub_model_id",
        "hub_strategy",
        "hub_always_push",
        "hub_revision",
        "log_completions_hub_repo",
        "logging_strategy",
        "logging_steps",
        "logging_first_step",
        "log_on_each_node",
        "logging_nan_inf_filter",
        "include_num_input_tokens_seen",
        "log_level",
        "log_level_replica",
        "disable_tqdm",
        "report_to",
        "run_name",
        "project",
        "trackio_space_id",
        "trackio_bucket_id",
        "trackio_static_space_id",
        "log_completions",
        "log_multimodal",
        "num_completions_to_print",
        "log_unique_prompts",
        "skip_memory_metrics",
        "save_only_model",
        "save_strategy",
        "save_steps",
        "save_on_each_node",
        "save_total_limit",
        "enable_jit_checkpoint",
        "load_best_model_at_end",
        "metric_for_best_model",
        "greater_is_better",
        "restore_callback_states_from_checkpoint",
        # evaluation during training (r3 trains without an eval set)
        "eval_strategy",
        "eval_steps",
        "eval_delay",
        "per_device_eval_batch_size",
        "prediction_loss_only",
        "eval_on_start",
        "eval_do_concat_batches",
        "eval_use_gather_object",
        "eval_accumulation_steps",
        "include_for_metrics",
        "batch_eval_metrics",
        "bf16_full_eval",
        "fp16_full_eval",
        "num_generations_eval",
        "eval_packing",
        "do_train",
        "do_eval",
        "do_predict",
        # processes, workers and servers: how the work is wired, not what it computes
        "local_rank",  # differs between the processes of one run
        "ddp_timeout",
        "dataloader_num_workers",
        "dataloader_pin_memory",
        "dataloader_persistent_workers",
        "dataloader_prefetch_factor",
        "dataloader_multiprocessing_context",
        "dataset_num_proc",
        "vllm_server_base_url",
        "vllm_server_host",
        "vllm_server_port",
        "vllm_server_timeout",
        "vllm_group_port",
        "threads",
        # memory switches that recompute or move tensors without changing the arithmetic
        "gradient_checkpointing",
        "gradient_checkpointing_kwargs",
        "activation_checkpointing",
        "activation_checkpointing_kwargs",
        "activation_offloading",
        "torch_empty_cache_steps",
        "ds3_gather_for_generation",
        "vllm_gpu_memory_utilization",
    }
)

#: How long to train: `--resume` with a larger `max_steps` trains a finished run for longer (under a
#: decaying `lr_scheduler_type` the steps after the resume follow the new length's schedule).
RUN_LENGTH = ("max_steps", "num_train_epochs")

#: Settings that may name a local file or folder: stored as absolute paths (`rundir.fingerprint`).
PATHS = ("model", "failures", "data", "chat_template_path")
#: Settings naming a data file whose content decides the run: a digest of the file is compared too.
DIGESTS = ("failures", "data")


def run_settings(config: Any) -> dict[str, Any]:
    """The settings of a training config that decide its result, as JSON values, plus a digest of each
    local data file (`DIGESTS`)."""
    skip = NOT_SETTINGS | set(RUN_LENGTH)
    settings = {
        f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.init and f.name not in skip
    }
    for name in DIGESTS:
        path = settings.get(name)
        if isinstance(path, str) and Path(path).expanduser().is_file():
            with Path(path).expanduser().open("rb") as handle:
                settings[f"{name}_sha256"] = hashlib.file_digest(handle, "sha256").hexdigest()
    return json.loads(json.dumps(settings, default=_plain))


def _plain(value: Any) -> Any:
    """A JSON value for a setting json cannot write itself (TRL's enums and config objects)."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


@contextmanager
def training_folder(config: Any, command: str, summary_file: str) -> Iterator[RunFolder | None]:
    """The output folder of one `r3 <command>` run, whose summary is `summary_file`: checked and (on
    the main process) locked for the whole block, its `run.json` written before the first step. The other
    processes of a distributed run only check, so that all refuse alike, and yield None."""
    fingerprint = rundir.fingerprint(command, run_settings(config), paths=PATHS)
    owned = (summary_file, *OWNED)  # the summary first: a refusal names the clearest sign of a run
    options: dict[str, Any] = {
        "command": command,
        "overwrite": config.overwrite,
        "resume": bool(config.resume or config.resume_from_checkpoint),
        "new_keys": [key for key in fingerprint if key not in ("version", "command")],
    }
    if config.process_index != 0:
        RunFolder.open(config.output_dir, fingerprint, owned, check_only=True, **options)
        yield None
        return
    with RunFolder.open(config.output_dir, fingerprint, owned, **options) as run:
        yield run
