"""Find tool calls in a model's text and compare them with a reference, without executing anything.

`extract_calls` cuts closed `<think>` blocks, then reads the first form present: `<tool_call>` tags
(all; an unclosed last one runs to the end), else the *last* code fence holding JSON, else bare JSON (the
whole text, or the *last* value that looks like calls): a retry often quotes its wrong first answer.
Text length, blocks, JSON starts, nesting depth and JSON tokens are capped, so any input is quick.

`compare_calls` is strict, as in the paper: each call is exactly `{"name": str, "arguments": object}`,
and the calls must be the reference's multiset, values compared as JSON (`canonical`). With `defaults`
(`schema_defaults(tools)`), an argument equal to its schema `default` counts as omitted on both sides.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections import Counter
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from r3.tasks.base import Verdict
from r3.text import clip

#: Longer completions are refused outright.
MAX_TEXT_CHARS = 200_000
#: At most this many `<tool_call>` tags or code fences are read.
MAX_BLOCKS = 64
#: At most this many positions are tried as the start of a bare JSON value.
MAX_JSON_STARTS = 128
#: Deeper JSON is refused before Python's json parser (which recurses per level) sees it.
MAX_DEPTH = 64
#: JSON tokens (strings, brackets) the depth check reads per completion: bare-JSON starts rescan
#: overlapping text, so the character cap alone allows dozens of full scans (seconds per completion).
MAX_SCAN_TOKENS = 30_000

_OPEN_TAG = "<tool_call>"
_CLOSE_TAG = "</tool_call>"
_FENCE = "```"
_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"
#: A `<think>` after nothing but spaces or tabs: from a given position, or from a line's start.
_THINK_AT_FLOOR = re.compile(r"[ \t]*(<think>)")
_THINK_AT_LINE = re.compile(r"(?<=[\r\n])[ \t]*(<think>)")
_LINE_END = re.compile(r"[ \t]*(?:[\r\n]|\Z)")


class _TooDeep(ValueError):
    """JSON nested deeper than `MAX_DEPTH`."""


class _OverBudget(Exception):
    """The completion holds more than `MAX_SCAN_TOKENS` JSON tokens: no answer needs that many."""


@dataclass
class _Budget:
    """JSON tokens the depth check may still read for this completion (shared by all its parses)."""

    tokens: int = MAX_SCAN_TOKENS


#: One JSON string (an unterminated one runs to the end) or one bracket.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


@dataclass(frozen=True)
class Extraction:
    """What `extract_calls` found: the call candidates (not yet checked), or why none were found."""

    calls: list[Any] | None
    problem: str = ""
    #: Where the calls came from: "tag", "fence" or "bare" ("" when nothing was found).
    source: str = ""


def _check_nesting(text: str, start: int, budget: _Budget) -> None:
    """Raise `_TooDeep` if the JSON value at `start` nests deeper than `MAX_DEPTH` (brackets outside
    strings), before json's recursive parser could overflow the C stack."""
    at = start
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    if at >= len(text) or text[at] not in "[{":
        return  # a scalar (or not JSON): the parser does not recurse
    depth = 0
    for match in _JSON_TOKEN.finditer(text, at):
        budget.tokens -= 1
        if budget.tokens < 0:
            raise _OverBudget
        char = text[match.start()]
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise _TooDeep("JSON nested too deeply")
        elif char in "]}":
            depth -= 1
            if depth == 0:
                return


def _loads(text: str, budget: _Budget) -> Any:
    """Parse one complete JSON value; ValueError when it is not one."""
    _check_nesting(text, 0, budget)
    return _DECODER.decode(text)


def _as_calls(value: Any) -> list[Any]:
    """A list of calls as written: a list stays a list, a single object is one call."""
    return list(value) if isinstance(value, list) else [value]


def _looks_like_calls(value: Any) -> bool:
    """Whether a bare JSON value was meant as the answer (rather than, say, numbers in prose)."""
    if isinstance(value, dict):
        return "name" in value
    if isinstance(value, list):
        return all(isinstance(item, dict) for item in value)
    return False


def strip_think(text: str) -> str:
    """`text` without its closed `<think>...</think>` blocks, in linear time. A block opens at a `<think>`
    that starts a line or follows a removed block (a JSON string holds no line break, so never one in an
    argument); a `</think>` ending its line before any such `<think>` closes a block the prompt opened."""
    first_close = text.find(_THINK_CLOSE)
    if first_close == -1:
        return text
    pos = 0
    start = _find_think_open(text, 0)
    if (start == -1 or first_close < start) and _LINE_END.match(text, first_close + len(_THINK_CLOSE)):
        pos = first_close + len(_THINK_CLOSE)  # the prompt opened this block
        start = _find_think_open(text, pos)
    pieces = []
    while start != -1:
        end = text.find(_THINK_CLOSE, start + len(_THINK_OPEN))
        if end == -1:
            break  # unclosed: the rest stays as it is
        pieces.append(text[pos:start])
        pos = end + len(_THINK_CLOSE)
        start = _find_think_open(text, pos)
    pieces.append(text[pos:])
    return "".join(pieces)


def _find_think_open(text: str, floor: int) -> int:
    """The first `<think>` at or after `floor` that starts a line (or `floor`, after spaces); -1 if none."""
    found = _THINK_AT_FLOOR.match(text, floor) or _THINK_AT_LINE.search(text, floor)
    return -1 if found is None else found.start(1)


def _tag_blocks(text: str) -> Iterator[str]:
    """Contents of `<tool_call>` tags, in order; an unclosed last tag runs to the end."""
    pos = 0
    for _ in range(MAX_BLOCKS):
        start = text.find(_OPEN_TAG, pos)
        if start == -1:
            return
        start += len(_OPEN_TAG)
        end = text.find(_CLOSE_TAG, start)
        if end == -1:
            yield text[start:]
            return
        yield text[start:end]
        pos = end + len(_CLOSE_TAG)


def _closing_fence(text: str, start: int) -> int:
    """Where the fence opened just before `start` closes, or -1: a ``` alone at a line's start or end,
    or closing a one-line block. A JSON string never spans lines, so an argument holding ``` is not cut."""
    pos = start
    for _ in range(MAX_BLOCKS):
        end = text.find(_FENCE, pos)
        if end == -1:
            return -1
        line_start = text.rfind("\n", 0, end) + 1
        line_end = text.find("\n", end)
        line_end = len(text) if line_end == -1 else line_end
        if (
            "\n" not in text[start:end]  # the one-line form: ```[...]```
            or not text[line_start:end].strip()
            or not text[end + len(_FENCE) : line_end].strip()
        ):
            return end
        pos = end + len(_FENCE)
    return -1


def _fence_blocks(text: str) -> Iterator[str]:
    """Contents of ``` fences, in order, without the language tag line; an unclosed last one runs on."""
    pos = 0
    for _ in range(MAX_BLOCKS):
        start = text.find(_FENCE, pos)
        if start == -1:
            return
        start += len(_FENCE)
        end = _closing_fence(text, start)
        body = text[start:] if end == -1 else text[start:end]
        first_line, newline, rest = body.partition("\n")
        # "```json\n[...]" -> drop the language tag; "```[...]```" -> keep everything.
        tag = first_line.strip()
        if newline and all(ch.isalnum() or ch in "-_+." for ch in tag):
            body = rest
        yield body
        if end == -1:
            return
        pos = end + len(_FENCE)


def _from_tags(text: str, budget: _Budget) -> Extraction:
    calls: list[Any] = []
    for number, block in enumerate(_tag_blocks(text), start=1):
        content = block.strip()
        if content.startswith(_FENCE):  # a fenced call inside the tag
            content = next(_fence_blocks(content))
        try:
            value = _loads(content, budget)
        except ValueError as exc:
            return Extraction(None, f"invalid JSON in <tool_call> block {number}: {_short_error(exc)}", "tag")
        calls.extend(_as_calls(value))
    return Extraction(calls, "", "tag")


def _from_fences(text: str, budget: _Budget) -> Extraction | None:
    found: Any = None
    first_error = ""
    for block in _fence_blocks(text):
        content = block.strip()
        if not content:
            continue
        try:
            value = _loads(content, budget)
        except ValueError as exc:
            if not first_error and content[:1] in "[{":
                first_error = _short_error(exc)
            continue
        if isinstance(value, (list, dict)):
            found = value
    if found is not None:
        return Extraction(_as_calls(found), "", "fence")
    if first_error:
        return Extraction(None, f"invalid JSON in code block: {first_error}", "fence")
    return None


def _from_bare(text: str, budget: _Budget) -> Extraction:
    try:
        value = _loads(text.strip(), budget)
    except ValueError:
        value = None
    if isinstance(value, (list, dict)):
        return Extraction(_as_calls(value), "", "bare")
    found: Any = None
    pos = 0
    too_deep = False
    for _ in range(MAX_JSON_STARTS):
        starts = [i for i in (text.find("[", pos), text.find("{", pos)) if i != -1]
        if not starts:
            break
        start = min(starts)
        pos = start + 1
        try:
            _check_nesting(text, start, budget)
            value, end = _DECODER.raw_decode(text, start)
        except _TooDeep:
            too_deep = True
            continue
        except ValueError:
            continue
        if _looks_like_calls(value):
            found = value  # keep looking: a later value (a corrected call) replaces this one
        pos = max(end, pos)  # a value is skipped whole: the calls inside a list are not candidates
    if found is not None:
        return Extraction(_as_calls(found), "", "bare")
    if too_deep:
        return Extraction(None, "tool call JSON nested too deeply")
    return Extraction(None, "no tool call found")


def extract_calls(text: Any) -> Extraction:
    """Find the calls the model wrote in `text` (forms: the module docstring), as parsed, not checked;
    never raises."""
    if not isinstance(text, str):
        return Extraction(None, f"completion is {type(text).__name__}, not text")
    if len(text) > MAX_TEXT_CHARS:
        return Extraction(None, f"completion too long ({len(text)} characters)")
    text = strip_think(text)
    budget = _Budget()
    try:
        if _OPEN_TAG in text:
            return _from_tags(text, budget)
        if _FENCE in text and (fenced := _from_fences(text, budget)) is not None:
            return fenced
        return _from_bare(text, budget)
    except _OverBudget:
        return Extraction(None, f"too much JSON to check (more than {MAX_SCAN_TOKENS} strings and brackets)")
    except RecursionError:  # not expected after the depth check
        return Extraction(None, "tool call JSON nested too deeply")


def _short_error(exc: BaseException) -> str:
    message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
    return clip(message, 80)


# --- canonical JSON values -------------------------------------------------------------------------


def canonical(value: Any, _depth: int = 0) -> Hashable:
    """A hashable form of a JSON value, equal exactly when the values are equal as JSON: tagged with its
    type (`True != 1`), an integral float as an int (`1.0 == 1`), objects unordered. `ValueError` for a
    value that is not JSON or nests past `MAX_DEPTH`."""
    if _depth > MAX_DEPTH:
        raise _TooDeep("JSON nested too deeply")
    if value is None:
        return ("null",)
    if isinstance(value, bool):  # before int: bool is a subclass of int in Python
        return ("bool", value)
    if isinstance(value, int):
        return ("num", value)
    if isinstance(value, float):
        if math.isnan(value):
            raise ValueError("NaN is not a JSON number")
        return ("num", int(value) if value.is_integer() else value)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, (list, tuple)):
        return ("list", tuple(canonical(item, _depth + 1) for item in value))
    if isinstance(value, dict):
        return ("obj", frozenset((str(k), canonical(v, _depth + 1)) for k, v in value.items()))
    raise ValueError(f"{type(value).__name__} is not a JSON value")


def json_equal(a: Any, b: Any) -> bool:
    """Whether two JSON values are equal under `canonical`'s rules (False when either is not JSON)."""
    try:
        return canonical(a) == canonical(b)
    except ValueError:
        return False


# --- schema defaults -------------------------------------------------------------------------------

#: A string default at most this long is also read as the JSON scalar it spells ("10" -> 10).
MAX_DEFAULT_TEXT = 100

#: Tool name -> parameter name -> the canonical values (`canonical`) that count as its default.
Defaults = Mapping[str, Mapping[str, frozenset[Hashable]]]


def _parameter_specs(parameters: Any) -> dict[Any, Any]:
    """A tool's `{parameter: spec}` from xLAM's shape (`{"city": {"type": "str", ...}}`) or JSON
    Schema's (`{"type": "object", "properties": {...}}`)."""
    if not isinstance(parameters, dict):
        return {}
    properties = parameters.get("properties")
    if parameters.get("type") == "object" and isinstance(properties, dict):
        return properties
    return parameters


def _default_forms(default: Any) -> frozenset[Hashable]:
    """The canonical values equal to a schema default: itself, and for a string also the JSON scalar it
    spells (xLAM writes many defaults as strings); ValueError when it is not a JSON value."""
    forms = {canonical(default)}
    if isinstance(default, str) and len(default) <= MAX_DEFAULT_TEXT:
        text = default.strip()
        if text and text[0] not in "[{":  # a scalar: json does not recurse, and the text is short
            with contextlib.suppress(ValueError):  # not JSON (a plain word): the string alone is the default
                forms.add(canonical(_DECODER.decode(text)))
    return frozenset(forms)


def schema_defaults(tools: Any) -> dict[str, dict[str, frozenset[Hashable]]]:
    """The `default` of every tool parameter that declares one, for `compare_calls(defaults=...)`; the
    first tool of a name counts, and anything unexpected is skipped (that parameter is compared strictly)."""
    defaults: dict[str, dict[str, frozenset[Hashable]]] = {}
    if not isinstance(tools, list):
        return defaults
    for tool in tools:
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or tool["name"] in defaults:
            continue
        params: dict[str, frozenset[Hashable]] = {}
        for key, spec in _parameter_specs(tool.get("parameters")).items():
            if isinstance(key, str) and isinstance(spec, dict) and "default" in spec:
                with contextlib.suppress(ValueError):  # not a JSON value: no default
                    params[key] = _default_forms(spec["default"])
        defaults[tool["name"]] = params
    return defaults


def _is_default(value: Any, forms: frozenset[Hashable] | None) -> bool:
    if not forms:
        return False
    try:
        return canonical(value) in forms
    except ValueError:  # not a JSON value: never a default (and `_key` will say so)
        return False


def omit_defaults(call: dict[str, Any], defaults: Defaults) -> dict[str, Any]:
    """A well-formed call without the arguments that equal their schema default (top level only)."""
    known = defaults.get(call["name"])
    if not known:
        return call
    arguments = {k: v for k, v in call["arguments"].items() if not _is_default(v, known.get(k))}
    return {"name": call["name"], "arguments": arguments}


# --- calls -----------------------------------------------------------------------------------------


def call_problem(call: Any, number: int) -> str:
    """Why `call` (the `number`-th, 1-based) is not a well-formed call; "" when it is one."""
    label = f"call {number}"
    if not isinstance(call, dict):
        return f"{label} is {json_type(call)}, expected an object with 'name' and 'arguments'"
    name = call.get("name")
    if not isinstance(name, str):
        return f"{label} has no 'name' string"
    label = f"call '{clip(name, 60)}'"
    if "arguments" not in call:
        if "parameters" in call:
            return f"{label} uses 'parameters'; expected 'arguments'"
        return f"{label} has no 'arguments'"
    arguments = call["arguments"]
    if not isinstance(arguments, dict):
        return f"{label}: 'arguments' is {json_type(arguments)}, expected an object"
    if extra := sorted(str(k) for k in call if k not in ("name", "arguments")):
        return f"{label} has unexpected key '{clip(extra[0], 40)}'"
    return ""


def json_type(value: Any) -> str:
    """The JSON type of a value as reasons say it ("a string", "a number", "null", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _show(value: Any) -> str:
    """A value as short JSON text, for reasons."""
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return clip(text, 60)


def _key(call: dict[str, Any]) -> Hashable:
    return (call["name"], canonical(call["arguments"]))


def _argument_difference(
    expected: dict[str, Any], got: dict[str, Any], name: str, defaults: Defaults | None = None
) -> str:
    """The first difference between two argument objects of the call `name`, as a reason; with
    `defaults` (already dropped on both sides), a missing or extra default argument says so."""
    where = f"of '{clip(name, 60)}'"
    has_default = defaults.get(name, {}) if defaults else {}
    for key in expected:
        if key not in got:
            note = f" (expected {_show(expected[key])}, not its default)" if key in has_default else ""
            return f"missing argument '{clip(str(key), 40)}' {where}{note}"
    for key in got:
        if key not in expected:
            note = f" (expected its default, got {_show(got[key])})" if key in has_default else ""
            return f"unexpected argument '{clip(str(key), 40)}' {where}{note}"
    for key, value in expected.items():
        if not json_equal(value, got[key]):
            return f"argument '{clip(str(key), 40)}' {where}: expected {_show(value)}, got {_show(got[key])}"
    return ""


def difference_size(expected: dict[str, Any], got: dict[str, Any]) -> int:
    """How many arguments differ between two calls of one tool (missing, extra or unequal)."""
    keys = set(expected) | set(got)
    return sum(1 for k in keys if k not in expected or k not in got or not json_equal(expected[k], got[k]))


def compare_calls(
    predicted: list[Any], reference: list[dict[str, Any]], defaults: Defaults | None = None
) -> Verdict:
    """Whether `predicted` is exactly the multiset `reference` (well-formed calls), with the first
    difference as the reason; with `defaults`, arguments equal to their default are dropped on both sides."""
    for number, call in enumerate(predicted, start=1):
        if problem := call_problem(call, number):
            return Verdict.failure(problem)
    if defaults:
        predicted = [omit_defaults(c, defaults) for c in predicted]
        reference = [omit_defaults(c, defaults) for c in reference]
    try:
        rest_pred, rest_ref = unmatched_calls(predicted, reference)
    except ValueError as exc:
        return Verdict.failure(f"arguments are not JSON values: {_short_error(exc)}")
    if not rest_pred and not rest_ref:
        return Verdict.success()

    ref_names = Counter(c["name"] for c in reference)
    for call in rest_pred:
        if call["name"] not in ref_names:
            return Verdict.failure(f"call '{clip(call['name'], 60)}' not in the reference")
    if missing := ref_names - Counter(c["name"] for c in predicted):
        return Verdict.failure(f"missing call '{clip(next(iter(missing)), 60)}'")
    if len(predicted) != len(reference):
        count = f"{len(predicted)} call" + ("" if len(predicted) == 1 else "s")
        return Verdict.failure(f"{count}, expected {len(reference)}")

    # Same names, same counts: explain each remaining reference call against its closest prediction.
    for ref in rest_ref:
        candidates = [c for c in rest_pred if c["name"] == ref["name"]]
        if not candidates:
            continue
        best = min(candidates, key=lambda c: difference_size(ref["arguments"], c["arguments"]))
        if reason := _argument_difference(ref["arguments"], best["arguments"], ref["name"], defaults):
            return Verdict.failure(reason)
        rest_pred.remove(best)
    return Verdict.failure("calls differ from the reference")


def unmatched_calls(
    predicted: list[dict[str, Any]], reference: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The predicted and reference calls left once exact matches are paired off, each in its list's
    order. ValueError when arguments are not JSON values."""
    matched = Counter(_key(c) for c in predicted) & Counter(_key(c) for c in reference)
    return _leftover(predicted, matched.copy()), _leftover(reference, matched)


def _leftover(calls: list[dict[str, Any]], matched: Counter[Hashable]) -> list[dict[str, Any]]:
    """`calls` less one call per key that `matched` still counts."""
    rest = []
    for call in calls:
        key = _key(call)
        if matched[key] > 0:
            matched[key] -= 1
        else:
            rest.append(call)
    return rest


def verify_calls(text: Any, reference: list[dict[str, Any]], defaults: Defaults | None = None) -> Verdict:
    """Extract the calls from a completion and compare them with `reference`; never raises."""
    try:
        found = extract_calls(text)
        if found.calls is None:
            return Verdict.failure(found.problem)
        if not found.calls and reference:
            return Verdict.failure(f"0 calls, expected {len(reference)}")
        return compare_calls(found.calls, reference, defaults)
    except Exception as exc:  # a verifier must answer, whatever the input; this is a bug if reached
        return Verdict.failure(f"could not check the tool calls ({type(exc).__name__})")
