"""The chain of rounds is built once (`episode.next_turn`, through the task's hooks) for `r3 eval`,
`r3 mine --rounds` and `r3 train`: a task's own reflection and retry chats reach every round of all
three, and a mined chain stops where the model's context ends, as an evaluated episode does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from r3.episode import EpisodeSampling, run_episodes
from r3.generation.base import SamplingConfig
from r3.generation.scripted import ScriptedGenerator
from r3.mining.mine import MineConfig, mine
from r3.mining.records import read_failures
from r3.tasks.base import Example, Prompt, Task, Verdict
from r3.tasks.custom import CustomTask
from r3.training.dataset import build_prompts

SAMPLING = EpisodeSampling(*(SamplingConfig(max_new_tokens=8, temperature=0.0),) * 3)


class PlainText:
    """A tokenizer without a chat template: `render_prompt` writes the chat as plain text."""

    chat_template = None


class Recorder(ScriptedGenerator):
    """A model that records every chat it continues. It answers a retry chat (5, 9, 13 ... messages,
    as the task prompt's 1) with a wrong answer and a reflection chat (3, 7, 11 ...) with a
    reflection, both naming the chat's length so that histories can be read back."""

    def __init__(self) -> None:
        super().__init__(self.answer)
        self.chats: list[Prompt] = []

    def answer(self, prompt: Prompt, sampling: SamplingConfig, index: int) -> str:
        self.chats.append(prompt)
        size = len(prompt.messages)
        return f"answer {size}" if size % 4 == 1 else f"reflection {size}"

    def reflection_chats(self) -> list[list[dict[str, str]]]:
        return [p.messages for p in self.chats if len(p.messages) % 4 == 3]


class ShortRecorder(Recorder):
    """A `Recorder` whose context holds chats of at most `limit` messages."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def fits(self, prompt: Prompt, max_new_tokens: int) -> bool:
        return len(prompt.messages) <= self.limit


class QuestionTask(Task):
    """Rows `{"id": i}`, one question each, never answered right (every chain runs to its end)."""

    name = "question"
    required_fields = ("id",)

    def load(self, data: str | None, limit: int | None = None, seed: int = 0) -> list[Example]:
        return [{"id": i} for i in range(limit or 2)]

    def prompt(self, example: Example) -> Prompt:
        return Prompt([{"role": "user", "content": f"question {example['id']}"}])

    def verify(self, example: Example, completion: str) -> Verdict:
        return Verdict.failure("never right")


class RowTask(QuestionTask):
    """Its reflection and retry requests name the row, in every round, through the chat hooks."""

    def reflection_prompt_after(self, example: Example, history: Prompt, failed: str) -> Prompt:
        return history.extend(
            {"role": "assistant", "content": failed},
            {"role": "user", "content": f"reflect on row {example['id']}"},
        )

    def retry_prompt_after(self, example: Example, reflection_chat: Prompt, reflection: str) -> Prompt:
        return reflection_chat.extend(
            {"role": "assistant", "content": reflection},
            {"role": "user", "content": f"retry row {example['id']}"},
        )


class HintedRetryTask(QuestionTask):
    """Overrides round 1's retry chat only (`Task.retry_prompt`): it adds a hint turn for the row."""

    def retry_prompt(self, example: Example, attempt: str, reflection: str) -> Prompt:
        chat = super().retry_prompt(example, attempt, reflection)
        return Prompt([*chat.messages[:-1], {"role": "user", "content": f"hint {example['id']}"}])


def never(example: Example, completion: str) -> bool:
    """The custom task's verifier: no answer is right, so every chain runs to its last round."""
    return False


def custom_rows() -> tuple[CustomTask, list[Example]]:
    """A custom task whose rows each carry their own `reflection_instruction`."""
    rows = [{"prompt": f"question {i}", "reflection_instruction": f"own reflection {i}"} for i in range(2)]
    return CustomTask(never, timeout_s=0), rows


def mine_and_train(
    task: Task, rows: list[Example], folder: Path, generator: Recorder, rounds: int = 3
) -> list[list[dict[str, str]]]:
    """`r3 mine --rounds` on `rows`, then the chats `r3 train` reflects in, in dataset order."""
    config = MineConfig(budget=1, round_size=1, keep=1, rounds=rounds, reflection_max_new_tokens=8)
    mine(task, rows, generator, folder, config, identity={"model": "scripted"})
    records = read_failures(folder / "failures.jsonl", task)
    prompts, index = build_prompts(records, task, PlainText())
    return [index[p["prompt"]].chat.messages for p in prompts]  # type: ignore[union-attr]


def eval_reflection_chats(task: Task, rows: list[Example], generator: Recorder, rounds: int = 3) -> list[Any]:
    """The reflection chats of `r3 eval --rounds`-style episodes, example by example, round by round."""
    episodes = run_episodes(task, generator, rows, SAMPLING, rounds=rounds)
    return [r.reflection_prompt.messages for ep in episodes for r in ep.rounds if r.reflection_prompt]


def user_turns(messages: list[dict[str, str]]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "user"]


def test_a_tasks_hooks_reach_every_round_of_eval_mining_and_training(tmp_path: Path) -> None:
    task = RowTask()
    rows = task.load(None)
    expected = {
        i: [f"question {i}", f"reflect on row {i}", f"retry row {i}", f"reflect on row {i}"] for i in (0, 1)
    }
    evaluated = Recorder()
    eval_chats = eval_reflection_chats(task, rows, evaluated)
    assert [len(c) for c in eval_chats] == [3, 7, 11] * 2
    # Round 3's retry chat: every request in the history is the row's own.
    last = run_episodes(task, Recorder(), rows[1:], SAMPLING, rounds=3)[0].rounds[-1].retry_prompt
    assert user_turns(last.messages) == ["question 1"] + ["reflect on row 1", "retry row 1"] * 3

    mined = Recorder()
    train_chats = mine_and_train(task, rows, tmp_path, mined)
    # Mining sent rounds 1 and 2 with the row's requests (round 3 is training's context only) ...
    assert [user_turns(c) for c in mined.reflection_chats()] == [
        expected[0][:2], expected[1][:2], expected[0], expected[1]
    ]  # fmt: skip
    # ... and training reflects in exactly the chats evaluation reflected in, rounds 1, 2 and 3.
    assert train_chats == eval_chats
    assert [user_turns(c) for c in train_chats][2] == [*expected[0], "retry row 0", "reflect on row 0"]


def test_a_custom_rows_own_reflection_instruction_reaches_every_round(tmp_path: Path) -> None:
    task, rows = custom_rows()
    eval_chats = eval_reflection_chats(task, rows, Recorder())
    assert [c[-1]["content"] for c in eval_chats] == ["own reflection 0"] * 3 + ["own reflection 1"] * 3
    mined = Recorder()
    train_chats = mine_and_train(task, rows, tmp_path, mined)
    for chat in [*mined.reflection_chats(), *train_chats]:
        row = chat[0]["content"].split()[-1]
        requests = user_turns(chat)[1::2]  # the task prompt, then a reflection request every other turn
        assert requests == [f"own reflection {row}"] * (len(chat) // 4 + 1)
    assert train_chats == eval_chats


def test_round_ones_retry_chat_is_the_tasks_own_in_training_too(tmp_path: Path) -> None:
    """`Task.retry_prompt` (round 1 only) is in the history of every later round, in all three."""
    task = HintedRetryTask()
    rows = task.load(None)
    eval_chats = eval_reflection_chats(task, rows, Recorder())
    train_chats = mine_and_train(task, rows, tmp_path, Recorder())
    assert train_chats == eval_chats
    reflect, retry = task.reflection_instruction, task.retry_instruction
    assert user_turns(train_chats[2]) == ["question 0", reflect, "hint 0", reflect, retry, reflect]


def test_a_mined_chain_stops_where_the_context_ends_as_evals_episode_does(tmp_path: Path) -> None:
    """A model holding 9 messages: eval reflects in rounds 1 (3 messages) and 2 (7), then stops before
    round 3 (11). Mining's episode stops there too, so training reflects in rounds 1 and 2 only, and
    mining never sends a chat the model cannot hold."""
    task, limit = QuestionTask(), 9
    evaluated = ShortRecorder(limit)
    (episode,) = run_episodes(task, evaluated, [{"id": 0}], SAMPLING, rounds=4)
    assert episode.stopped == "round 3: the history no longer fits the model's context"
    eval_chats = [r.reflection_prompt.messages for r in episode.rounds if r.reflection_prompt]

    mined = ShortRecorder(limit)
    train_chats = mine_and_train(task, [{"id": 0}], tmp_path / "mine", mined, rounds=4)
    (mined_episode,) = json.loads((tmp_path / "mine" / "failures.jsonl").read_text())["failed_attempts"]
    # Rounds 1 and 2 ran; the context round 2's failed retry opens (11 messages) does not fit.
    assert [r["reflection"] for r in mined_episode["rounds"]] == ["reflection 3", "reflection 7"]
    assert mined_episode["stopped"] == "round 3: the history no longer fits the model's context"
    assert train_chats == eval_chats and [len(c) for c in train_chats] == [3, 7]
    assert all(len(chat.messages) <= limit for chat in mined.chats)
