"""scripts/replica_throughput.py reports what it measured: the ratio of the medians against the target, rounds that
lost a reply or ran on a busy machine, and its section of BENCHMARKS.md rewritten in place. No process is started."""

from __future__ import annotations

import doctest

from tests.scripts import load_script

script = load_script("replica_throughput.py")
Round = script.Round


def _target_row(section: str) -> str:
    return next(line for line in section.splitlines() if line.startswith("| two replicas vs one"))


def test_docstring_examples_run():
    result = doctest.testmod(script, verbose=False)
    assert result.attempted >= 1 and result.failed == 0


def test_the_ratio_is_of_the_medians_and_a_busy_round_is_left_out():
    rounds = [
        Round(1, 1, 60, 14.0, 60),  # 257/min
        Round(2, 2, 60, 7.5, 60),  # 480/min
        Round(3, 1, 60, 13.8, 60),  # 261/min
        Round(4, 2, 60, 10.0, 60, counted=False),  # another job took a core: run again
        Round(5, 2, 60, 7.4, 60),  # 486/min
        Round(6, 1, 60, 14.4, 60),  # 250/min
    ]
    section = script.render_section(rounds, command="python scripts/replica_throughput.py", context="Quiet.")
    assert _target_row(section) == (
        "| two replicas vs one, `QABOT_THREADS=1` each | >= 1.8 x | 483 / 257 questions/min = **1.88 x** | met |"
    )
    assert "| ~~4~~ (not counted: machine busy) | 2 | 10.0 | 360 |" in section
    assert [line for line in section.splitlines() if line.startswith("| **median**")] == [
        "| **median** | 1 | | **257** | | | | | | | |",
        "| **median** | 2 | | **483** | | | | | | | |",
    ]


def test_a_lost_or_repeated_reply_fails_the_target_whatever_the_speed():
    rounds = [
        Round(1, 1, 60, 14.0, 60),
        Round(2, 2, 60, 7.0, 58, missing=1, duplicated=1),
        Round(3, 2, 60, 9.0, 59, failed=1, counted=False),  # run again, but the apology still counts
    ]
    section = script.render_section(rounds, command="c", context="x")
    assert _target_row(section).endswith("**2.00 x** | **not met** |")
    assert "| 2 | 2 | 7.0 | 514 | 58/60 (**1 missing, 1 twice, 0 apologies**) |" in section
    assert "| 59/60 (**0 missing, 0 twice, 1 apologies**) |" in section
    rounds[1] = Round(2, 2, 60, 7.0, 60)
    assert not script.summarise(rounds).met
    assert "Not every mention got exactly one reply: the run does not count." in section


def test_too_slow_is_not_met():
    section = script.render_section([Round(1, 1, 60, 14.0, 60), Round(2, 2, 60, 9.0, 60)], command="c", context="x")
    assert _target_row(section).endswith("400 / 257 questions/min = **1.56 x** | **not met** |")


def test_the_section_is_rewritten_between_its_markers_and_nothing_else_changes(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    before = "# Benchmarks\n\n<!-- bench:begin -->\nbench tables\n<!-- bench:end -->\n\n## Notes\n\nhand-written\n"
    path.write_text(before, encoding="utf-8")
    script.write_section(path, "first\n")
    assert path.read_text(encoding="utf-8") == before + "\n<!-- replicas:begin -->\nfirst\n<!-- replicas:end -->\n"
    script.write_section(path, "second\n")
    assert path.read_text(encoding="utf-8") == before + "\n<!-- replicas:begin -->\nsecond\n<!-- replicas:end -->\n"
    moved = path.read_text(encoding="utf-8") + "\n## Later\n\nmore text\n"
    path.write_text(moved, encoding="utf-8")
    script.write_section(path, "third\n")
    assert path.read_text(encoding="utf-8") == moved.replace("second", "third")
