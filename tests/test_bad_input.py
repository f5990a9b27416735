"""The bad-input and fault matrix (benchmarks/fault_matrix.py), every case run as a user would, on the tiny run.

One case per command and fault: train, evaluate, export, benchmark, run and serve with bad values, a crafted pickle,
a corrupt checkpoint, a network bind without a token, no display, a full disk. Each must exit 2 (bad input) or 1
(the failed export), print exactly one stderr line and no traceback, and leave no new or changed file beyond the
export report it documents. The cases live in the benchmark script so that its committed table and this test run
the same commands; the full-disk case needs root to mount its 256 KiB tmpfs and is skipped otherwise.
"""

from __future__ import annotations

import pytest

from .conftest import load_benchmark

pytestmark = pytest.mark.slow

FAULT_MATRIX = load_benchmark("fault_matrix")


def test_the_matrix_covers_every_command():
    commands = {name.split()[0].rstrip(",") for name in FAULT_MATRIX.case_names()}
    assert commands == {"train", "evaluate", "export", "benchmark", "run"}, commands


@pytest.mark.parametrize("name", FAULT_MATRIX.case_names())
def test_bad_input_is_one_line_with_its_exit_code_and_leaves_nothing(name, tiny_run):
    case, code, lines, leftovers, verdict = FAULT_MATRIX.run_case(tiny_run, name)
    if verdict.startswith("skipped"):
        pytest.skip(verdict)
    assert verdict.startswith("ok"), f"{case}: exit {code}, {lines} stderr line(s), leftovers {leftovers}: {verdict}"
