"""One record from eval to report: an `Episode` with K rounds is written by `r3 eval`, mined by
`r3 mine --rounds`, replayed by `r3 train` and read by `r3 report`, and it is the same record at every
stage (the same attempt, rounds, chats and verdicts), so that no stage rebuilds a round of its own."""

from __future__ import annotations

from pathlib import Path

from r3.episode import Episode, next_turn, reflection_turns
from r3.evaluation.evaluate import EvalConfig, evaluate
from r3.evaluation.records import read_samples
from r3.generation.chat import render_prompt
from r3.generation.scripted import ScriptedGenerator
from r3.mining.mine import MineConfig, mine
from r3.mining.records import read_failures
from r3.reports.compare import load_run
from r3.tasks import get_task
from r3.tasks.base import Prompt
from r3.training.dataset import build_prompts

TASK = get_task("countdown")
EXAMPLE = {"nums": [2, 5, 7], "target": 14}
K = 3


class PlainText:
    """A tokenizer without a chat template: `render_prompt` writes the chat as plain text."""

    chat_template = None


def never_right(prompt: Prompt, sampling: object, index: int) -> str:
    """A model that answers by the chat alone (not the seed), so that eval and mining draw the same
    texts: its k-th reflection is "idea k", its answers are always wrong."""
    reflections = sum(m["content"] == TASK.reflection_instruction for m in prompt.messages)
    if prompt.messages[-1]["content"] == TASK.reflection_instruction:
        return f"idea {reflections}"
    return f"<answer> 2 + {reflections} </answer>"


def test_an_episode_is_the_same_record_in_eval_mining_training_and_the_report(tmp_path: Path) -> None:
    evaluate(EvalConfig(rounds=K), TASK, [EXAMPLE], ScriptedGenerator(never_right), tmp_path / "eval")
    (evaluated,) = read_samples(tmp_path / "eval" / "samples.jsonl", TASK)
    assert [r.number for r in evaluated.rounds] == list(range(1, K + 1)) and evaluated.solved_round is None

    # The report reads the very episode (its example as stored, no task needed).
    (reported,) = load_run(tmp_path / "eval").samples
    assert isinstance(reported, Episode) and reported.to_json() == evaluated.to_json()
    assert reported.example == TASK.to_record(evaluated.example)

    # Mining the same example continues its failed attempt by the same K rounds (K + 1: mining's
    # --rounds counts the context the last failed retry opens, which training reflects in).
    config = MineConfig(budget=1, round_size=1, keep=1, rounds=K + 1)
    mine(TASK, [EXAMPLE], ScriptedGenerator(never_right), tmp_path / "mine", config)
    (record,) = read_failures(tmp_path / "mine" / "failures.jsonl", TASK)
    (failed,) = record.failed_attempts
    assert failed.episode == evaluated

    # Training reflects in the chats eval reflected in, round by round, and in the one after round K.
    after = next_turn(TASK, evaluated)
    assert after is not None
    chats = [r.reflection_prompt for r in evaluated.rounds] + [after.reflection_prompt]
    assert [t.reflection_prompt for t in reflection_turns(TASK, failed.episode)] == chats
    rows, index = build_prompts([record], TASK, PlainText())
    assert [(row["round"], index[row["prompt"]].chat) for row in rows] == list(
        zip(range(1, K + 2), chats, strict=True)
    )
    assert [row["prompt"] for row in rows] == [render_prompt(PlainText(), chat) for chat in chats]
