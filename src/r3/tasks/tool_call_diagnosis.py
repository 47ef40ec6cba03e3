"""Function calling's diagnosis of a failed answer, and failed answers made from the reference calls.

Both serve the warm-start that primes the episode (`r3 sft --primed_fraction`): a failed answer, a
reflection that says what is wrong with it, and the corrected answer. The diagnosis follows the
verifier's own comparison (`tool_calls.extract_calls`, `call_problem`, `unmatched_calls`) and says
what is wrong in the first person, without the answer: it may name the tool the model itself called,
an argument name, a JSON type and a number of calls, but never an argument's value (neither the
right one nor the model's own, which may hold part of it), and never the name of the tool that should
have been called in place of a wrong one.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

from r3.tasks.tool_calls import (
    Defaults,
    call_problem,
    difference_size,
    extract_calls,
    json_equal,
    json_type,
    omit_defaults,
    unmatched_calls,
)
from r3.text import clip

#: At most this many problems are named in one diagnosis: a reflection is short.
MAX_SENTENCES = 3
#: Perturbations tried before `perturb_calls` gives up.
PERTURB_TRIES = 20

_FORMAT = 'I must reply with only a JSON list of calls, each {"name": ..., "arguments": {...}}.'


def diagnose_calls(
    text: Any,
    reference: list[dict[str, Any]],
    defaults: Defaults | None = None,
    tool_names: Collection[str] | None = None,
) -> str | None:
    """A first-person reflection on why `text` does not make the `reference` calls, or None when it
    does. `defaults` as in `compare_calls`; `tool_names`: the tools the model was given, so that a
    made-up tool is told apart from a wrong one."""
    found = extract_calls(text)
    if found.calls is None:
        return _unreadable(found.problem)
    calls = found.calls
    if not calls:
        return f"I made no tool call, but the request needs {_count(len(reference))}." if reference else None
    for number, call in enumerate(calls, start=1):
        problem = call_problem(call, number)
        if problem:
            return (
                f"My call {number} is not in the right form ({problem}). Each call must be an object with "
                'exactly a "name" string and an "arguments" object.'
            )
    if defaults:
        calls = [omit_defaults(c, defaults) for c in calls]
        reference = [omit_defaults(c, defaults) for c in reference]
    try:
        rest_pred, rest_ref = unmatched_calls(calls, reference)
    except ValueError:
        return "One of my calls has an argument value that is not valid JSON. " + _FORMAT
    if not rest_pred and not rest_ref:
        return None
    sentences = _name_problems(rest_pred, calls, reference, tool_names) or _argument_problems(
        rest_pred, rest_ref
    )
    if not sentences:
        return "My calls do not do what the request asks; I should read it again and match every detail."
    return " ".join(sentences[:MAX_SENTENCES])


def _unreadable(problem: str) -> str:
    """No calls could be read: none written, or not as JSON."""
    if problem == "no tool call found":
        return "I did not write any tool call as JSON, so nothing could be checked. " + _FORMAT
    return f"My tool calls could not be read ({clip(problem, 100)}). " + _FORMAT


def _count(n: int) -> str:
    return "1 call" if n == 1 else f"{n} calls"


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def _name_problems(
    rest_pred: list[dict[str, Any]],
    calls: list[dict[str, Any]],
    reference: list[dict[str, Any]],
    tool_names: Collection[str] | None,
) -> list[str]:
    """Sentences about tools called that the request does not need, and about the number of calls."""
    wanted = Counter(c["name"] for c in reference)
    sentences = []
    for name in dict.fromkeys(c["name"] for c in rest_pred if c["name"] not in wanted):
        shown = clip(name, 60)
        if tool_names is not None and name not in tool_names:
            sentences.append(
                f"I called '{shown}', which is not one of the tools I was given: I must use only the listed "
                "tools, with their exact names."
            )
        else:
            sentences.append(
                f"I called '{shown}', but that is not the tool this request needs: I should pick the tool "
                "whose description matches what is asked."
            )
    if len(calls) != len(reference):
        sentences.append(f"I made {_count(len(calls))}, but the request needs {len(reference)}.")
    elif not sentences:  # every tool called is needed, as many calls as needed: one tool too often
        made = Counter(c["name"] for c in calls)
        for name in made - wanted:
            sentences.append(
                f"I called '{clip(name, 60)}' {_times(made[name])}, but the request needs it "
                f"{_times(wanted[name])}: another of my calls should use a different tool."
            )
    return sentences


def _argument_problems(rest_pred: list[dict[str, Any]], rest_ref: list[dict[str, Any]]) -> list[str]:
    """Sentences about the arguments of each call that names the right tool but does not match, each
    paired with the closest reference call of that tool (as the verifier pairs them)."""
    sentences: list[str] = []
    left = list(rest_pred)
    for ref in rest_ref:
        candidates = [c for c in left if c["name"] == ref["name"]]
        if not candidates:
            continue
        best = min(candidates, key=lambda c: difference_size(ref["arguments"], c["arguments"]))
        left.remove(best)
        sentences += _argument_sentences(ref["name"], ref["arguments"], best["arguments"])
    return sentences


def _argument_sentences(name: str, expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """What is wrong with one call's arguments: missing, extra, of the wrong type, of the wrong value."""
    where = f"My call to '{clip(name, 60)}'"
    out = []
    for key in expected:
        if key not in got:
            out.append(f"{where} leaves out the argument '{clip(str(key), 40)}', which the request needs.")
    for key in got:
        if key not in expected:
            out.append(
                f"{where} passes the argument '{clip(str(key), 40)}', which this call should not have."
            )
    for key, value in expected.items():
        if key in got and not json_equal(value, got[key]):
            out.append(_value_sentence(where, str(key), value, got[key]))
    return out


def _value_sentence(where: str, key: str, expected: Any, got: Any) -> str:
    """A wrong argument: its type when that is what differs (unless the right type would give the value
    away, as null does), else only that its value is wrong."""
    shown = clip(key, 40)
    want, have = json_type(expected), json_type(got)
    if want != have:
        if want == "null":
            return f"{where} gives '{shown}' a value of the wrong type."
        return f"{where} gives '{shown}' as {have}, but it must be {want}."
    return f"{where} has the wrong value for '{shown}': I should take it from the request exactly as asked."


# --------------------------------------------------------------------------------------------------
# Perturbed answers


def perturb_calls(
    calls: list[dict[str, Any]], rng: random.Random, rejected: Callable[[str], bool]
) -> str | None:
    """The reference `calls` with one thing broken (an argument dropped, a value of another JSON type,
    a wrong value; a call repeated when no call has arguments), as the compact JSON list the prompt
    asks for, tried until `rejected(text)` (the verifier fails it). None if no try was rejected.
    Deterministic given `rng`."""
    with_arguments = [i for i, c in enumerate(calls) if c.get("arguments")]
    kinds = ("drop", "retype", "revalue") if with_arguments else ("repeat",)
    for _ in range(PERTURB_TRIES):
        broken = _broken(calls, with_arguments, rng.choice(kinds), rng)
        if broken is None:
            continue
        text = json.dumps(broken, ensure_ascii=False)
        if rejected(text):
            return text
    return None


def _broken(
    calls: list[dict[str, Any]], with_arguments: list[int], kind: str, rng: random.Random
) -> list[dict[str, Any]] | None:
    """A copy of `calls` with one perturbation of `kind`, or None when it does not apply."""
    copy = [{"name": c["name"], "arguments": dict(c.get("arguments") or {})} for c in calls]
    if kind == "repeat":
        return [*copy, copy[rng.randrange(len(copy))]] if copy else None
    call = copy[rng.choice(with_arguments)]
    key = rng.choice(sorted(call["arguments"]))
    if kind == "drop":
        del call["arguments"][key]
        return copy
    value = call["arguments"][key]
    new = _retyped(value) if kind == "retype" else _wrong_value(value, rng)
    if new is _NOTHING:
        return None
    call["arguments"][key] = new
    return copy


_NOTHING = object()


def _retyped(value: Any) -> Any:
    """The same content as another JSON type: a number or boolean as a string, a string as a number
    when it spells one (else as a one-item list), a list or object as its JSON text."""
    if isinstance(value, str):
        try:
            number = json.loads(value)
        except ValueError:
            return [value]
        return number if isinstance(number, int | float) and not isinstance(number, bool) else [value]
    return json.dumps(value, ensure_ascii=False)


def _wrong_value(value: Any, rng: random.Random) -> Any:
    """A different value of the same JSON type (`_NOTHING` for null, which has no other)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + rng.choice((1, -1, 2, 10))
    if isinstance(value, float):
        return value + rng.choice((0.5, 1.0, -1.0))
    if isinstance(value, str):
        options = [value + "s", value.upper(), value.lower(), " ".join(value.split()[:-1])]
        return rng.choice([o for o in options if o and o != value])  # value + "s" always qualifies
    if isinstance(value, list):
        return value[:-1] if value else ["x"]
    if isinstance(value, dict):
        if not value:
            return {"x": "x"}
        first = next(iter(value))
        return {k: v for k, v in value.items() if k != first}
    return _NOTHING
