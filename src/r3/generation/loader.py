"""Choose and build a generation backend from command-line style options."""

from __future__ import annotations

import os
from typing import Any

from r3.errors import R3Error
from r3.generation.base import Generator
from r3.models import display_name, load_model_and_tokenizer, resolve_model


def load_generator(
    model: str | None,
    backend: str = "transformers",
    *,
    device: str | None = None,
    dtype: str = "auto",
    batch_size: int = 16,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    request_timeout: float = 300.0,
    max_retries: int = 6,
    engine_args: dict[str, Any] | None = None,
) -> Generator:
    """A ready backend for `model` (hub id, local folder, None for the embedded default, or with
    `backend="openai"` the model's name at `base_url`); `engine_args` go to `vllm.LLM`."""
    if engine_args and backend != "vllm":
        raise R3Error(f"engine arguments are for --backend vllm (got --backend {backend})")
    if backend == "transformers":
        from r3.generation.transformers_backend import TransformersBackend

        lm, tokenizer = load_model_and_tokenizer(model, device=device, dtype=dtype)
        return TransformersBackend(lm, tokenizer, batch_size=batch_size, model_name=display_name(model))
    if backend == "vllm":
        from r3.generation.vllm_backend import VLLMBackend

        return VLLMBackend(
            resolve_model(model), model_name=display_name(model), dtype=dtype, **(engine_args or {})
        )
    if backend == "openai":
        from r3.generation.openai_backend import OpenAIBackend

        if not base_url or not model:
            raise R3Error("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1) and --model")
        return OpenAIBackend(
            base_url,
            model,
            os.environ.get(api_key_env) or None,
            concurrency=batch_size,
            timeout=request_timeout,
            max_retries=max_retries,
        )
    raise R3Error(f"unknown backend '{backend}' (choose transformers, vllm or openai)")
