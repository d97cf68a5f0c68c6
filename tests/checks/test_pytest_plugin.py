"""The pytest plugin, as a project's own test suite uses it (run by pytester in a child)."""

from __future__ import annotations

import re

import pytest

from pagingcheck.checks.pytest_plugin import kernel_spec
from pagingcheck.impl.minimal import MinimalKernel
from tests.tiny import TINY

pytest_plugins = ["pytester"]


SUITE = """
import pytest

def test_the_minimal_kernel_refines_the_spec(pagingcheck):
    report = pagingcheck.validate("pagingcheck.impl.minimal:MinimalKernel", config="tiny.yaml")
    assert report.ok

@pytest.mark.pagingcheck(config="tiny.yaml", profile="dev")
def test_the_marker_gives_the_defaults(pagingcheck):
    from pagingcheck.impl.minimal import MinimalKernel
    assert pagingcheck.validate(MinimalKernel).ok

def test_a_seeded_bug_fails_the_test(pagingcheck):
    bug = "pagingcheck.impl.mutants:reuse_busy_frame"
    pagingcheck.validate(bug, variants=["multilevel-precise-clock"])

def test_a_bad_configuration_is_one_line(pagingcheck):
    pagingcheck.validate("pagingcheck.impl.minimal:MinimalKernel", config="missing.yaml")
"""


def test_the_fixture_and_marker_check_a_kernel_and_fail_with_the_trace(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".yaml", tiny=TINY)
    pytester.makepyfile(test_kernel=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=2, failed=2)
    output = result.stdout.str()
    match = re.search(r"violates busy_frame_exclusive: .*\n\s+trace: (\S+)", output)
    assert match, output
    assert "replay: pagingcheck replay" in output
    assert match.group(1).endswith(".yaml") and (pytester.path / match.group(1)).is_file()
    assert "pagingcheck: " in output and "missing.yaml" in output
    assert "Traceback" not in output.split("test_a_bad_configuration_is_one_line")[-1]


def test_a_kernel_is_named_as_a_trace_names_it() -> None:
    assert kernel_spec(MinimalKernel) == "pagingcheck.impl.minimal.kernel:MinimalKernel"
    assert kernel_spec("exec:./kernel") == "exec:./kernel"

    class Local(MinimalKernel):
        pass

    with pytest.raises(pytest.UsageError, match="cannot be named"):
        kernel_spec(Local)
