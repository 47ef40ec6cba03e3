"""The learning experiment's report: R3 against its controls, with tests, and the training curves.

The driver beside it (`countdown_r3.py`) imports it. It reads the folders the driver writes
(`eval-<model>[-resample]`, `trained`, `trained-shuffled`, `trained-grpo`, `trained-combined`) and
writes `experiment.md` and `training_curves.png` into the report folder. The comparison that decides
whether R3 learned is second-try accuracy on the same problems: R3 against the warm-started model (did
training help?) and against the shuffled control (same compute, no link between a reflection and its
reward: did the *reward* help?). Before either is read, the control must pass its gate: within
`CONTROL_GATE` of the warm-start (it trains on noise; if it moves the model, the optimizer is the
problem). Plain GRPO on first attempts at equal compute is the bar R3 is measured against (what a user
with a verifier would run instead); the combined variant (both turns trained, group by group) is
compared the same way. Both a two-proportion z-test and the paired exact McNemar test are given; the
verdict line uses the McNemar p, as the experiment's goal states it, and says plainly when the run
showed nothing.

Every model is named by one display name (`LABELS`) in tables and prose alike. Comparisons pair a
problem only with the same problem (`r3.reports.problems.problem_key`); when the models did not all
evaluate the same problems, the report says so in one sentence instead of claiming they did. Paths in
the settings are written relative to the report's folder, so that the report names nothing of the
machine that wrote it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from r3.episode import Episode
from r3.evaluation.records import Accuracy, EvalResults, read_results, read_samples
from r3.evaluation.stats import mcnemar_exact, two_proportion_test
from r3.reports.plots import save_figure
from r3.reports.problems import ProblemKey, comparability_note, display_path, problem_key
from r3.reports.training import plot_training_curves, read_training_summary, success_key

#: The one display name of each model, in tables, prose and plots (the folder names stay as they are).
LABELS = {
    "warmstart": "warm-start",
    "trained": "R3",
    "shuffled": "shuffled control",
    "grpo": "plain GRPO",
    "combined": "combined",
}
TRAINING_DIRS = {
    "trained": "trained",
    "shuffled": "trained-shuffled",
    "grpo": "trained-grpo",
    "combined": "trained-combined",
}
#: The goal: R3's second try at least this far above both controls, with the paired exact McNemar p
#: below `ALPHA` (issue 18 states it so: every model answers the same problems). The two-proportion
#: test stays in the tables, beside it.
MIN_GAIN, ALPHA = 0.10, 0.05
#: The shuffled control's gate: its second try within this distance of the warm-start's.
CONTROL_GATE = 0.03


Rows = dict[ProblemKey, Episode]


def portable(value: Any, base: str | Path) -> Any:
    """`value` (settings: dicts, lists, strings) with every absolute path made relative to `base`."""
    if isinstance(value, str):
        return display_path(value, base)
    if isinstance(value, Mapping):
        return {key: portable(item, base) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [portable(item, base) for item in value]
    return value


def _load(folder: Path) -> tuple[EvalResults, Rows] | None:
    """An evaluation's results and its episodes keyed by problem; None when it was not run."""
    results = folder / "results.json"
    if not results.is_file():
        return None
    rows = {problem_key(ep.index, ep.example): ep for ep in read_samples(folder / "samples.jsonl")}
    return read_results(results), rows


def _cell(block: Accuracy, n: int) -> str:
    lo, hi = block.ci95
    return f"{block.accuracy:.1%} ({block.correct}/{n}) [{lo:.1%}, {hi:.1%}]"


def compare(a: Rows, b: Rows, key: str) -> dict[str, float]:
    """`key` (`first_try_ok` or `second_try_ok`) of run a against run b on the problems both evaluated
    (episodes keyed by problem: a problem only one of them holds is in neither test, so a paired test
    never pairs two problems)."""
    common = sorted(set(a) & set(b))
    solved_a = [bool(getattr(a[i], key)) for i in common]
    solved_b = [bool(getattr(b[i], key)) for i in common]
    ka, kb = sum(solved_a), sum(solved_b)
    only_a = sum(x and not y for x, y in zip(solved_a, solved_b, strict=True))
    only_b = sum(y and not x for x, y in zip(solved_a, solved_b, strict=True))
    test = two_proportion_test(ka, len(common), kb, len(common)) if common else {"diff": 0, "z": 0, "p": 1}
    return {
        **test,
        "n": len(common),
        "only_a": only_a,
        "only_b": only_b,
        "mcnemar_p": mcnemar_exact(only_a, only_b),
    }


def _gate_and_bar(evals: dict[str, Any], warm: Rows, trained: Rows | None) -> list[str]:
    """The shuffled control's gate (within `CONTROL_GATE` of the warm-start on the second try) and
    plain GRPO at equal compute (and the combined variant) against the warm-start and against R3, as
    lines of the report. `trained` is None in a run without R3 (`r3: false`): only the warm-start
    comparisons are made."""
    lines: list[str] = []
    if evals["shuffled"] is not None:
        t = compare(evals["shuffled"][1], warm, "second_try_ok")
        passed = abs(t["diff"]) <= CONTROL_GATE
        lines.append(
            f"Control gate: the {LABELS['shuffled']} is {t['diff']:+.1%} from the {LABELS['warmstart']} on "
            "the second try "
            f"(McNemar p = {t['mcnemar_p']:.3g}): "
            + (
                "passed"
                if passed
                else f"**failed** (more than {CONTROL_GATE:.0%}: training on noise moved the model)"
            )
            + "."
        )
    for name, title in (
        ("grpo", f"{LABELS['grpo']} (equal compute)"),
        ("combined", f"{LABELS['combined']} (GRPO on attempts + R3 on reflections)"),
    ):
        if evals[name] is None:
            continue
        other = evals[name][1]
        lines += [
            "",
            f"| {title} | attempt | difference | p (two-proportion z) | discordant | p (McNemar) |",
            "|---|---|---|---|---|---|",
        ]
        pairs_compared = [(other, warm, f"{LABELS[name]} vs {LABELS['warmstart']}")]
        if trained is not None:
            pairs_compared.append((trained, other, f"{LABELS['trained']} vs {LABELS[name]}"))
        for a, b, label in pairs_compared:
            for key, attempt in (("second_try_ok", "2nd try"), ("first_try_ok", "1st try")):
                t = compare(a, b, key)
                pairs, p = f"{t['only_a']} / {t['only_b']}", t["mcnemar_p"]
                lines.append(f"| {label} | {attempt} | {t['diff']:+.1%} | {t['p']:.3g} | {pairs} | {p:.3g} |")
        if trained is None:
            continue
        t = compare(trained, other, "second_try_ok")
        level = "at least level with" if t["diff"] >= 0 or t["mcnemar_p"] >= ALPHA else "below"
        lines.append("")
        against = f"{t['diff']:+.1%}, McNemar p = {t['mcnemar_p']:.3g}"
        lines.append(f"{LABELS['trained']} is {level} {LABELS[name]} on the second try ({against}).")
    return [*lines, ""] if lines else []


def _mean(points: list[tuple[int, float]]) -> float | None:
    return sum(p[1] for p in points) / len(points) if points else None


def write_experiment_report(
    out: Path,
    report: Path,
    suffix: str = "",
    *,
    split: str = "heldout",
    seed: int | None = None,
    config: dict[str, Any] | None = None,
    wall_seconds: float | None = None,
) -> str:
    """Write `experiment.md` and `training_curves.png` into `report`; return the markdown."""
    report.mkdir(parents=True, exist_ok=True)
    evals = {name: _load(out / f"eval-{name}{suffix}") for name in LABELS}
    resamples = {name: _load(out / f"eval-{name}-resample{suffix}") for name in LABELS}
    lines = [
        f"# Countdown learning experiment ({split} split, evaluation seed {seed})",
        "",
        "| model | 1st try (greedy) | 2nd try: reflect + retry (greedy) | 1st try (sampled) | "
        "2nd try: resample, no reflection (sampled) |",
        "|---|---|---|---|---|",
    ]
    for name, label in LABELS.items():
        loaded, resampled = evals[name], resamples[name]
        if loaded is None and resampled is None:
            continue  # not part of this run (the demo trains no control)
        cells = ["-", "-"] if loaded is None else [
            _cell(loaded[0].first_try, loaded[0].n), _cell(loaded[0].second_try, loaded[0].n)
        ]  # fmt: skip
        cells += ["-", "-"] if resampled is None else [
            _cell(resampled[0].first_try, resampled[0].n),
            _cell(resampled[0].second_try, resampled[0].n),
        ]  # fmt: skip
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    # Every evaluation, the resampled ones too: the table's "same problems" covers each of its cells.
    present = [(LABELS[name], group[name]) for group in (evals, resamples) for name in LABELS if group[name]]
    note = comparability_note([(label, list(run[1])) for label, run in present])
    lines += [
        "",
        "95% Wilson intervals. " + (f"**{note}**" if note else "Same problems for every model."),
        "",
    ]

    others = [name for name in ("warmstart", "shuffled") if evals[name] is not None]
    verdict = "This run showed no change: an evaluation is missing."
    extra: list[str] = []
    if evals["trained"] is not None and "warmstart" in others:
        rows = {name: evals[name][1] for name in ["trained", *others]}  # type: ignore[index]
        lines += [
            "| comparison | attempt | difference | z | p (two-proportion z) | discordant (A only / B only) "
            "| p (exact McNemar, paired) |",
            "|---|---|---|---|---|---|---|",
        ]
        wins = []
        for other in others:
            for key, attempt in (("second_try_ok", "2nd try"), ("first_try_ok", "1st try")):
                t = compare(rows["trained"], rows[other], key)
                if key == "second_try_ok":
                    wins.append((LABELS[other], t))
                lines.append(
                    f"| {LABELS['trained']} vs {LABELS[other]} | {attempt} | {t['diff']:+.1%} | {t['z']:.2f} "
                    f"| {t['p']:.3g} | {t['only_a']} / {t['only_b']} | {t['mcnemar_p']:.3g} |"
                )
        against = "; ".join(
            f"{t['diff']:+.1%} vs the {label}, McNemar p = {t['mcnemar_p']:.3g}" for label, t in wins
        )
        scope = (
            "both controls"
            if len(wins) == 2
            else f"the {LABELS['warmstart']} (this run has no {LABELS['shuffled']})"
        )
        if all(t["diff"] >= MIN_GAIN and t["mcnemar_p"] < ALPHA for _, t in wins):
            verdict = f"R3 beat {scope} on the second try by at least {MIN_GAIN:.0%} ({against})."
        elif all(t["mcnemar_p"] < ALPHA and t["diff"] > 0 for _, t in wins):
            verdict = (
                f"R3 beat {scope} on the second try (p < {ALPHA}), by less than {MIN_GAIN:.0%} ({against})."
            )
        elif worse := [label for label, t in wins if t["mcnemar_p"] < ALPHA and t["diff"] < 0]:
            # A significant loss is not "no gain": say it, naming what R3 fell below.
            below = " and the ".join(worse)
            verdict = f"R3 was significantly worse than the {below} on the second try ({against})."
        else:
            verdict = f"This run showed no significant gain of R3 over {scope} on the second try ({against})."
        extra = _gate_and_bar(evals, rows["warmstart"], rows["trained"])
    elif evals["warmstart"] is not None and evals["trained"] is None:  # a run without R3 (`r3: false`)
        verdict = "This run trained no R3 model: the table and the comparisons below are the others'."
        extra = _gate_and_bar(evals, evals["warmstart"][1], None)
    lines += ["", f"**{verdict}**", "", *extra]

    summaries = {LABELS[name]: read_training_summary(out / folder) for name, folder in TRAINING_DIRS.items()}
    runs = {label: summary.series for label, summary in summaries.items() if summary and summary.series}
    updates = {label: summary.optimizer_steps if summary else None for label, summary in summaries.items()}
    if any(runs.values()):
        save_figure(plot_training_curves(runs), report / "training_curves.png")
        lines += ["## Training", "", "![training curves](training_curves.png)", ""]
        lines += [
            "| run | steps | mean success (retry; GRPO: attempt; combined: both) "
            "| groups with signal (trained / drawn) "
            "| groups resampled per rollout | advantage token balance | mean reflection length |"
        ]
        lines += ["|---|---|---|---|---|---|---|"]
        for label, series in runs.items():
            success = success_key(series)  # the reward's own outcome
            # Rollouts: steps that logged the rollout's counts (a step whose rewards were all unscorable
            # logs no success); older summaries without the counts, by their success entries.
            rollouts = max(len(series.get(key, [])) for key in (success, "r3/groups_drawn"))
            ran = updates[label]  # more than the rollouts when each serves several steps (num_iterations)
            steps = f"{ran} ({rollouts} rollouts)" if ran and ran != rollouts else str(rollouts)

            def fmt(key: str, pattern: str, series: dict[str, list[tuple[int, float]]] = series) -> str:
                value = _mean(series.get(key, []))
                return "-" if value is None else pattern.format(value)

            no_signal = _mean(series.get("r3/groups_no_signal", []))
            trained = "-" if no_signal is None else f"{1 - no_signal:.2f}"
            lines.append(
                f"| {label} | {steps} | {fmt(success, '{:.3f}')} | {trained} / "
                f"{fmt('r3/groups_with_signal_drawn', '{:.2f}')} | {fmt('r3/resampled_groups', '{:.2f}')} | "
                f"{fmt('r3/advantage_token_balance', '{:+.3f}')} | {fmt('r3/reflection_length', '{:.1f}')} |"
            )
        lines.append("")
    forgetting = out / "forgetting" / "forgetting.json"
    if forgetting.is_file():
        from r3.forgetting.report import forgetting_table

        lines += [
            "## General ability before and after (`r3 forgetting`)",
            "",
            forgetting_table(json.loads(forgetting.read_text())),
            "",
            "lm-eval scores ± standard error on R3's local 40-question task (`r3_basics`): it can show a "
            "model that training broke, not a change of a few points. `forgetting/` holds lm-eval's files.",
            "",
        ]
    if wall_seconds is not None:
        lines += [
            f"Wall time of this invocation: {wall_seconds / 60:.1f} min (steps already done are skipped).",
            "",
        ]
    lines += ["Reflections side by side and accuracy plots: `report.md` in this folder.", ""]
    if config is not None:
        settings = json.dumps(portable(config, report), indent=1)
        lines += ["## Settings", "", "Paths relative to this folder.", "", "```json", settings, "```", ""]
    text = "\n".join(lines)
    (report / "experiment.md").write_text(text)
    return text
