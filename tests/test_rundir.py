"""`r3.rundir.RunFolder`, the one output folder of `r3 eval` and `r3 mine`, on its own: lock,
fingerprint, `--overwrite`, log recovery and durable appends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r3.errors import R3Error
from r3.evaluation.evaluate import EvalConfig, open_output
from r3.rundir import FINGERPRINT_VERSION, RunFolder, fingerprint, log_lines, read_log, torn_tail

OWNED = ["rows.jsonl", "summary.json"]


def test_resume_refuse_and_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with RunFolder.open(out, {"a": 1}, OWNED, command="test") as run:
        assert not run.resumed
        run.append("rows.jsonl", [{"i": 0}, {"i": 1}])
    (out / "notes.txt").write_text("mine")  # not the command's: never touched
    with RunFolder.open(out, {"a": 1}, OWNED, command="test") as run:
        assert run.resumed and run.rows("rows.jsonl") == [{"i": 0}, {"i": 1}]
    with pytest.raises(R3Error, match=r"holds another run's output \(a: 1 -> 2\)"):
        RunFolder.open(out, {"a": 2}, OWNED, command="test")
    with pytest.raises(R3Error, match="another run"):
        RunFolder.open(out, {"a": 2}, OWNED, command="test", check_only=True)
    with RunFolder.open(out, {"a": 2}, OWNED, command="test", overwrite=True) as run:
        assert not run.resumed and run.rows("rows.jsonl") == []
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "run.json").read_text()) == {"a": 2}


def test_check_only_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "new"
    assert not RunFolder.open(out, {"a": 1}, OWNED, command="test", check_only=True).resumed
    assert not out.exists()


def test_new_keys_are_compared_only_when_both_sides_have_them(tmp_path: Path) -> None:
    RunFolder.open(tmp_path, {"a": 1}, OWNED, command="test").close()
    with RunFolder.open(tmp_path, {"a": 1, "digest": "x"}, OWNED, command="test", new_keys=["digest"]) as run:
        assert run.resumed
    with pytest.raises(R3Error, match="digest"):
        RunFolder.open(tmp_path, {"a": 1, "digest": "x"}, OWNED, command="test")


def test_files_without_run_json_are_refused(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text('{"i": 0}\n')
    with pytest.raises(R3Error, match="holds rows.jsonl but no run.json"):
        RunFolder.open(tmp_path, {"a": 1}, OWNED, command="test")


def test_one_writer_per_folder_in_eval_too(tmp_path: Path) -> None:
    config = EvalConfig(task="countdown")
    with open_output(config, tmp_path), pytest.raises(R3Error, match="another `r3 eval` is writing"):
        open_output(config, tmp_path)
    open_output(config, tmp_path).close()  # released


def test_a_torn_tail_is_cut_and_a_damaged_middle_refused(tmp_path: Path) -> None:
    log = tmp_path / "rows.jsonl"
    log.write_bytes(b'{"i": 0}\n{"i": 1}\n{"i": 2')
    assert read_log(log) == [{"i": 0}, {"i": 1}]
    assert log.read_bytes().endswith(b'{"i": 2')  # read-only by default
    assert read_log(log, repair=True) == [{"i": 0}, {"i": 1}]
    assert log.read_bytes() == b'{"i": 0}\n{"i": 1}\n'
    log.write_bytes(b'{"i": 0}\nnot json\n{"i": 2}\n')
    with pytest.raises(R3Error, match="rows.jsonl: line 2 is not a JSON object but later lines are"):
        read_log(log)


def test_fingerprint_orders_drops_and_resolves_by_one_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rows.jsonl").write_text("{}\n")
    settings = {"data": "rows.jsonl", "model": "org/model", "a": 1, "unused": 2}
    built = fingerprint(
        "test",
        settings,
        examples_sha256="abc",
        omit=["unused"],
        batching={"window": 4},
        paths=["data", "model"],
    )
    assert list(built.items()) == [
        ("version", FINGERPRINT_VERSION),
        ("command", "test"),
        ("data", str(tmp_path / "rows.jsonl")),  # a local file: absolute
        ("model", "org/model"),  # not a local path (a hub id): as given
        ("a", 1),
        ("window", 4),
        ("examples_sha256", "abc"),
    ]
    assert "window" not in fingerprint("test", settings, batching=None)
    with pytest.raises(ValueError, match="'version' is not a setting"):
        fingerprint("test", {"version": 1})


def test_torn_tail_says_whether_a_read_leaves_the_end_out(tmp_path: Path) -> None:
    log = tmp_path / "rows.jsonl"
    for text, torn in (
        ('{"i": 0}\n', False),
        ('{"i": 0}\n{"i"', True),
        ('{"i": 0}\n[1]\n', True),
        ("", False),
    ):
        log.write_text(text)
        assert torn_tail(log) is torn, text
    assert log_lines(tmp_path / "none.jsonl") == [] and not torn_tail(tmp_path / "none.jsonl")
    log.write_text('{"i": 0}\n\n{"i": 1}\n')
    assert log_lines(log) == [(1, {"i": 0}), (3, {"i": 1})]  # line numbers as an editor counts them


def test_owned_patterns_and_folders_are_removed_by_overwrite_and_nothing_else(tmp_path: Path) -> None:
    owned = ["summary.json", "step-*"]
    with RunFolder.open(tmp_path, {"a": 1}, owned, command="test", resume=False):
        pass
    for step in (1, 2):
        (tmp_path / f"step-{step}").mkdir()
        (tmp_path / f"step-{step}" / "weights").write_text("w")
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "stepwise.md").write_text("mine too")  # not matched by step-*
    with RunFolder.open(tmp_path, {"a": 2}, owned, command="test", overwrite=True, resume=False) as run:
        assert not run.resumed
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "notes.txt", "run.json", "stepwise.md"]
    assert json.loads((tmp_path / "run.json").read_text()) == {"a": 2}


def test_a_command_that_continues_only_when_asked(tmp_path: Path) -> None:
    """`resume=False`: a folder holding the command's output is refused even with the same settings,
    naming both ways on; `resume=True` continues it only with the same settings."""
    owned = ["summary.json", "step-*"]
    RunFolder.open(tmp_path, {"a": 1}, owned, command="test", resume=False).close()
    (tmp_path / "step-1").mkdir()
    with pytest.raises(R3Error, match=r"earlier run with these settings \(step-1\): --resume .* --overwrite"):
        RunFolder.open(tmp_path, {"a": 1}, owned, command="test", resume=False)
    with pytest.raises(R3Error, match=r"other settings \(a: 1 -> 2\): --overwrite .* --resume"):
        RunFolder.open(tmp_path, {"a": 2}, owned, command="test", resume=False)
    with pytest.raises(R3Error, match=r"other settings \(a: 1 -> 2\)"):
        RunFolder.open(tmp_path, {"a": 2}, owned, command="test", resume=True, check_only=True)
    with RunFolder.open(tmp_path, {"a": 1}, owned, command="test", resume=True) as run:
        assert run.resumed


def test_a_record_without_output_is_nothing_to_continue_unless_another_commands(tmp_path: Path) -> None:
    """A `run.json` alone (a run that failed before its first output) starts afresh with any settings,
    asked to resume or not; one of another command is that command's folder, refused."""
    RunFolder.open(tmp_path, {"version": 4, "command": "test", "a": 1}, [], command="test").close()
    for resume in (False, True):
        new = {"version": 4, "command": "test", "a": 2}
        with RunFolder.open(tmp_path, new, ["out.bin"], command="test", resume=resume) as run:
            assert not run.resumed
        assert json.loads((tmp_path / "run.json").read_text())["a"] == 2
    with pytest.raises(R3Error, match="of `r3 test`, not `r3 other`"):
        RunFolder.open(
            tmp_path, {"version": 4, "command": "other"}, ["out.bin"], command="other", resume=True
        )


def test_a_long_list_of_files_or_changes_is_cut_short(tmp_path: Path) -> None:
    for name in ("a.bin", "b.bin", "c.bin", "d.bin", "e.bin"):
        (tmp_path / name).write_text("x")
    with pytest.raises(R3Error, match=r"holds a.bin, b.bin, c.bin and 2 more but no run.json"):
        RunFolder.open(tmp_path, {"a": 1}, ["*.bin"], command="test")
    stored = {f"k{i}": i for i in range(6)}
    (tmp_path / "run.json").write_text(json.dumps(stored))
    changed = {f"k{i}": i + 1 for i in range(6)}
    with pytest.raises(R3Error, match=r"k3: 3 -> 4; and 2 more\)"):
        RunFolder.open(tmp_path, changed, ["*.bin"], command="test")
