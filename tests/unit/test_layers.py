"""The layer check of tests/conftest.py: a test file without its folder's marker fails the run."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.unit

LAYERS = ("unit", "integration", "e2e", "fault")
MARKERS = "".join(f"    {layer}: the {layer} layer\n" for layer in LAYERS)
# Its test files are named check_*.py: the docs test takes every test_*.py a file names for a module here.
INI = f"[pytest]\nasyncio_default_fixture_loop_scope = function\npython_files = check_*.py\nmarkers =\n{MARKERS}"
PASSING_TEST = "def test_passes() -> None:\n    assert True\n"


def write_test(pytester: pytest.Pytester, layer: str, marker: str | None) -> None:
    """tests/<layer>/check_it.py with one passing test, marked ``marker`` (None: unmarked)."""
    pytester.makeini(INI)
    pytester.makeconftest("from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n")
    folder = pytester.path / "tests" / layer
    folder.mkdir(parents=True)
    mark = f"import pytest\npytestmark = pytest.mark.{marker}\n" if marker else ""
    (folder / "check_it.py").write_text(mark + PASSING_TEST)


@pytest.mark.parametrize("layer", LAYERS)
def test_a_file_without_its_layers_marker_fails_the_run(pytester: pytest.Pytester, layer: str) -> None:
    write_test(pytester, layer, None)
    result = pytester.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*/{layer}/check_it.py: pytest.mark.{layer}"])


def test_selecting_a_layer_does_not_hide_an_unmarked_file(pytester: pytest.Pytester) -> None:
    write_test(pytester, "unit", None)
    result = pytester.runpytest_inprocess("-m", "unit")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_another_layers_marker_does_not_count(pytester: pytest.Pytester) -> None:
    write_test(pytester, "integration", "unit")
    result = pytester.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*/integration/check_it.py: pytest.mark.integration"])


@pytest.mark.parametrize("layer", LAYERS)
def test_a_file_with_its_layers_marker_runs(pytester: pytest.Pytester, layer: str) -> None:
    write_test(pytester, layer, layer)
    pytester.runpytest_inprocess().assert_outcomes(passed=1)
