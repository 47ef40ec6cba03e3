"""Choose and build a generation backend from command-line style options."""

from __future__ import annotations

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
) -> Generator:
    """A ready backend for `model` (hub id, local folder, or None for the embedded default)."""
    if backend == "transformers":
        from r3.generation.transformers_backend import TransformersBackend

        lm, tokenizer = load_model_and_tokenizer(model, device=device, dtype=dtype)
        return TransformersBackend(lm, tokenizer, batch_size=batch_size, model_name=display_name(model))
    if backend == "vllm":
        from r3.generation.vllm_backend import VLLMBackend

        return VLLMBackend(resolve_model(model), model_name=display_name(model), dtype=dtype)
    raise R3Error(f"unknown backend '{backend}' (choose transformers or vllm)")
