"""Turn a `Prompt` into the text a model continues: every backend and the trainer render through
`render_prompt`, so the model sees the same text in evaluation, mining and training."""

from __future__ import annotations

import json
from typing import Any

from r3.tasks.base import Prompt


def template_supports_tools(tokenizer: Any) -> bool:
    """True when the tokenizer's chat template reads a `tools` variable."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = " ".join(str(v) for v in template.values())
    return isinstance(template, str) and "tools" in template


def inline_tools(prompt: Prompt) -> list[dict[str, str]]:
    """The messages with the tool schemas in the system turn, for a template without `tools=`."""
    messages = [dict(m) for m in prompt.messages]
    if not prompt.tools:
        return messages
    block = "You have access to the following tools:\n" + json.dumps(
        prompt.tools, ensure_ascii=False, indent=1
    )
    if messages and messages[0]["role"] == "system":
        messages[0]["content"] = messages[0]["content"] + "\n\n" + block
    else:
        messages.insert(0, {"role": "system", "content": block})
    return messages


def render_prompt(tokenizer: Any, prompt: Prompt) -> str:
    """The prompt text, ending where the assistant's next turn begins."""
    if getattr(tokenizer, "chat_template", None) is None:
        return _plain_render(inline_tools(prompt))
    if prompt.tools and template_supports_tools(tokenizer):
        return tokenizer.apply_chat_template(
            prompt.messages, tools=prompt.tools, add_generation_prompt=True, tokenize=False
        )
    return tokenizer.apply_chat_template(inline_tools(prompt), add_generation_prompt=True, tokenize=False)


def _plain_render(messages: list[dict[str, str]]) -> str:
    """A minimal format for tokenizers without a chat template (tiny test models)."""
    parts = [f"<|{m['role']}|>\n{m['content']}\n" for m in messages]
    return "".join(parts) + "<|assistant|>\n"
