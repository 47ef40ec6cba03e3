"""A newcomer's first contact with the command line: each command's help leads with what it does, an
example and R3's own options; each mistake is one line in R3's words that names the fix, exit 2."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from r3.cli import main

COMMANDS = ("train", "sft", "eval", "mine", "report", "forgetting")
CPU_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "smollm2_countdown_cpu.yaml"


def help_of(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    """The lines `r3 argv` prints (a help flag: exits 0 after printing)."""
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code in (0, None)
    return capsys.readouterr().out.splitlines()


def one_line_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """`r3 argv` must fail with exit status 2 and one line on stderr, R3's, with no traceback."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("r3: error: ") and "Traceback" not in err
    return lines[0]


# --- help --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_help_opens_with_a_description_and_an_example_and_lists_config(command: str, capsys) -> None:
    lines = help_of(capsys, command, "--help")
    assert lines[0].startswith(f"usage: r3 {command} ") and len(lines[0]) < 100  # one short usage line
    assert lines[1] == "" and lines[2][:1].isalpha()  # then the description, in words
    assert any(line.startswith(f"  r3 {command} ") for line in lines[2:30])  # an example command line
    assert any(line.lstrip().startswith("--config FILE.yaml") for line in lines)


@pytest.mark.parametrize(("command", "option"), [("train", "--failures"), ("sft", "--task_seed")])
def test_training_help_puts_r3s_options_before_trls(command: str, option: str, capsys) -> None:
    lines = help_of(capsys, command, "--help")
    at = next(i for i, line in enumerate(lines) if line.lstrip().startswith(option))
    assert at < 80, f"{option} is at line {at + 1}"
    assert lines[at].split(maxsplit=2)[-1].strip() or lines[at + 1].strip()  # described
    full = help_of(capsys, command, "--help-all")
    assert len(full) > 3 * len(lines)  # TRL's fields, shown by --help-all only
    shown = "\n".join(lines)
    assert "--output_dir" in shown and "--gradient_accumulation_steps" not in shown
    assert "--gradient_accumulation_steps" in "\n".join(full)
    assert "--help-all" in shown


def test_train_help_is_short_and_names_help_all(capsys) -> None:
    lines = help_of(capsys, "train", "--help")
    assert len(lines) < 250
    assert any("--help-all" in line and "more options" in line for line in lines[:30])


def test_defaults_are_shown(capsys) -> None:
    text = " ".join(" ".join(help_of(capsys, "eval", "--help")).split())
    assert "(default: countdown)" in text and "(default: 256)" in text  # --task, --max-new-tokens
    text = " ".join(" ".join(help_of(capsys, "train", "--help")).split())
    assert "(default: r3)" in text and "(default: stored)" in text  # --mode, --first_attempt


def test_help_after_a_recipe_shows_the_recipes_values(capsys) -> None:
    text = " ".join(" ".join(help_of(capsys, "train", "--config", str(CPU_RECIPE), "--help")).split())
    assert "(default: 20)" in text.split("--max-steps MAX_STEPS", 1)[1].split("--", 1)[0]  # the recipe's


def test_help_all_of_a_command_without_inherited_options_is_its_help(capsys) -> None:
    assert help_of(capsys, "eval", "--help-all") == help_of(capsys, "eval", "--help")


def test_forgetting_help_says_what_it_does(capsys) -> None:
    lines = help_of(capsys, "forgetting", "--help")
    assert "lm-evaluation-harness" in " ".join(lines[:6])


# --- errors ------------------------------------------------------------------------------------------


def test_config_key_typo_names_the_key_and_the_closest(tmp_path: Path, capsys) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(CPU_RECIPE.read_text() + "lerning_rate: 1.0e-5\n")
    line = one_line_error(capsys, "train", "--config", str(recipe), "--failures", "f.jsonl")
    assert line.endswith("recipe.yaml: unknown key 'lerning_rate' (did you mean 'learning_rate'?)")
    recipe.write_text("modle: x\n")
    line = one_line_error(capsys, "eval", "--config", str(recipe))
    assert "unknown key 'modle' (did you mean 'model'?)" in line


def test_config_key_with_no_close_name_points_to_the_list(tmp_path: Path, capsys) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("zzzz_qqqq: 1\n")
    line = one_line_error(capsys, "train", "--config", str(recipe))
    assert "unknown key 'zzzz_qqqq'" in line and "r3 train --help-all lists the options" in line


@pytest.mark.parametrize(
    ("argv", "wanted"),
    [
        (
            ["train", "--lerning-rate", "1e-5"],
            "unknown option --lerning-rate (did you mean --learning-rate?)",
        ),
        (["eval", "--max-new-tokns", "8"], "unknown option --max-new-tokns (did you mean --max-new-tokens?)"),
        (["mine", "--budgett=8"], "unknown option --budgett (did you mean --budget?)"),
        (["sft", "--task_sed", "1"], "unknown option --task_sed (did you mean --task_seed?)"),
    ],
)
def test_flag_typo_names_the_closest_flag(argv: list[str], wanted: str, capsys) -> None:
    assert one_line_error(capsys, *argv) == f"r3: error: {wanted}"


def test_a_value_no_flag_takes(capsys) -> None:
    assert "unexpected argument 'countdown'" in one_line_error(capsys, "eval", "countdown")


def test_a_bad_value_is_one_line(capsys) -> None:
    assert "invalid int value: 'many'" in one_line_error(capsys, "eval", "--max-new-tokens", "many")


def test_train_without_failures_names_the_option(tmp_path: Path, capsys) -> None:
    """Checked before TRL's own checks (on a CPU, bf16's) can speak for the real mistake."""
    line = one_line_error(capsys, "train", "--output_dir", str(tmp_path / "o"))
    assert "r3 train needs --failures FILE" in line and "r3 mine" in line
    line = one_line_error(capsys, "train", "--config", str(CPU_RECIPE))
    assert "needs --failures" in line


def test_trls_bf16_check_says_what_to_pass(tmp_path: Path, capsys) -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU that may train in bf16")
    line = one_line_error(capsys, "sft", "--output_dir", str(tmp_path / "o"))
    assert "--use_cpu true --bf16 false" in line


def test_task_name_typo_suggests_the_task(capsys) -> None:
    line = one_line_error(capsys, "eval", "--task", "countdwn", "--limit", "1")
    assert "unknown task 'countdwn'" in line and "Did you mean: countdown?" in line


@pytest.mark.parametrize(
    ("verifier", "wanted"),
    [
        (
            "examples.custom_task.verifier",
            "'examples.custom_task.verifier' is a module: name the function in it after a colon",
        ),
        ("no_such_pkg_xyz.verify", "(the form is package.module:function, with a colon)"),
        ("verify", "the form is package.module:function, with a colon"),
    ],
)
def test_verifier_path_without_a_colon_says_the_form(verifier: str, wanted: str, capsys) -> None:
    data = Path(__file__).resolve().parents[1] / "examples" / "custom_task" / "data.jsonl"
    line = one_line_error(capsys, "eval", "--task", "custom", "--data", str(data), "--verifier", verifier)
    assert wanted in line


def test_no_deprecation_warning_the_user_cannot_act_on(tmp_path: Path) -> None:
    """TRL's default `gradient_checkpointing` makes transformers warn on every run; parsing keeps quiet."""
    from r3.cli.train_cmd import parse

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parse(["--config", str(CPU_RECIPE), "--failures", "f.jsonl", "--output_dir", str(tmp_path)])
    assert not [w for w in caught if "gradient_checkpointing" in str(w.message)]
