"""bench/stats.py gives each figure as the median of its runs with their range, the way every
benchmark section reports it, and ratios with a precision that fits their size."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "bench"))

import stats  # noqa: E402


def test_median_with_range_of_odd_and_even_runs():
    assert stats.med_range([12118, 11892, 13845]) == "12,118 (11,892-13,845)"
    assert stats.med_range([1.0, 2.0], 2, " ms") == "1.50 ms (1.00-2.00)"


def test_bold_median_one_run_and_missing_runs():
    assert stats.med_range([4.466], 2, " ms", bold=True) == "**4.47 ms**"
    assert stats.med_range([None, 3, None, 5, 4]) == "4 (3-5)"
    assert stats.med_range([None]) == "n/a"


def test_ratio_precision():
    assert stats.ratio(39352, 63.2) == "623"
    assert stats.ratio(2.5, 1) == "2.50"
    assert stats.ratio(1, 0) is None


def test_machine_line():
    line = stats.machine()
    assert " CPUs (" in line and " GiB RAM, " in line


def test_command_names_the_script_and_bench_settings(monkeypatch):
    for k in list(stats.os.environ):
        if k.startswith("BENCH_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("BENCH_REST_RUNS", "3")
    monkeypatch.setenv("BENCH_NO_DOC", "1")
    cmd = stats.command("bench/rest.sh")
    assert cmd.startswith("`BENCH_REST_RUNS=3 ") and cmd.endswith("bash bench/rest.sh`")
    assert "BENCH_NO_DOC" not in cmd
