"""Sampling from a model behind an OpenAI-compatible server (`vllm serve`, an API): chats sent as messages,
one request per sample with its own seed (servers differ on `n > 1`), stop strings applied here (servers
disagree on whether the text keeps them, and verifiers need them), token usage counted (`usage`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from r3.errors import R3Error
from r3.generation.base import Completion, SamplingConfig, request_seeds, sample_seed, truncate_at_stop
from r3.tasks.base import Prompt


def calls_as_text(tool_calls: Sequence[Any]) -> str:
    """Tool calls a server parsed out of the text, written back as the JSON list of `{"name",
    "arguments"}` the function-calling verifier reads (so verdicts do not depend on the server)."""
    calls = []
    for call in tool_calls:
        function = call.function
        try:
            arguments = json.loads(function.arguments) if function.arguments else {}
        except json.JSONDecodeError:
            arguments = function.arguments  # kept as the string: the verifier will reject it
        calls.append({"name": function.name, "arguments": arguments})
    return json.dumps(calls, ensure_ascii=False)


class OpenAIBackend:
    """A `Generator` over an OpenAI-compatible chat completions endpoint."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout: float = 300.0,
        max_retries: int = 6,
    ) -> None:
        try:
            import openai
        except ImportError:
            raise R3Error(
                "--backend openai needs the openai client: pip install 'reflect-retry-reward[api]'"
            ) from None
        self._openai = openai
        self.client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout, max_retries=max_retries
        )
        self.base_url = base_url
        self.model = model
        self.model_name = model
        self.concurrency = max(1, concurrency)
        self.usage = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0}
        self._lock = threading.Lock()

    def generate(self, prompts: Sequence[Prompt], n: int, sampling: SamplingConfig) -> list[list[Completion]]:
        greedy = sampling.temperature <= 0
        per_prompt = 1 if greedy else n
        seeds = request_seeds(sampling, len(prompts))
        jobs = [(i, j) for i in range(len(prompts)) for j in range(per_prompt)]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [
                pool.submit(self._request, prompts[i], sampling, sample_seed(seeds[i], j)) for i, j in jobs
            ]
            results = [future.result() for future in futures]  # the first error is raised here
        out = [results[i * per_prompt : (i + 1) * per_prompt] for i in range(len(prompts))]
        return [group * n if greedy else group for group in out]

    def _request(self, prompt: Prompt, sampling: SamplingConfig, seed: int) -> Completion:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(m) for m in prompt.messages],
            "max_tokens": sampling.max_new_tokens,
            "temperature": max(0.0, sampling.temperature),
            "seed": seed,
        }
        if sampling.temperature > 0 and sampling.top_p < 1.0:
            kwargs["top_p"] = sampling.top_p
        if prompt.tools:
            kwargs["tools"] = [
                tool if tool.get("type") == "function" else {"type": "function", "function": tool}
                for tool in prompt.tools
            ]
        try:
            response = self.client.chat.completions.create(**kwargs)
        except self._openai.APIConnectionError:
            raise R3Error(
                f"cannot reach the server at {self.base_url} (connection failed or timed out)"
            ) from None
        except self._openai.APIStatusError as exc:
            raise R3Error(
                f"the server at {self.base_url} answered {exc.status_code}: {_short(exc)}"
            ) from None
        choice = response.choices[0]
        text = choice.message.content or ""
        if choice.message.tool_calls:
            text = (text + "\n" if text else "") + calls_as_text(choice.message.tool_calls)
        text, stopped = truncate_at_stop(text, sampling.stop)
        completion_tokens = response.usage.completion_tokens if response.usage else 0
        with self._lock:
            self.usage["requests"] += 1
            if response.usage:
                self.usage["prompt_tokens"] += response.usage.prompt_tokens
                self.usage["completion_tokens"] += completion_tokens
        length = choice.finish_reason == "length" and not stopped
        return Completion(
            text=text, num_tokens=completion_tokens, finish_reason="length" if length else "stop"
        )


def _short(exc: Exception) -> str:
    """The first line of an API error's message, at most 200 characters."""
    message = getattr(exc, "message", None) or str(exc)
    return message.splitlines()[0][:200] if message else type(exc).__name__
