"""The documentation: generated references complete, and every file the code and docs name exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import Field

from infra.docs import configuration, kafka, metrics
from shared.codec import SCHEMA_DIR
from shared.config import HeraldSettings
from shared.topics import Topics

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
# Where the project names its own files: prose and code comments alike.
NAMING_SOURCES = (
    "README.md",
    "docs/**/*.md",
    "schemas/README.md",
    "shared/**/*.py",
    "services/**/*.py",
    "infra/**/*.py",
    "tests/**/*.py",
)
# A repository path: a top-level folder of the project, then a file with an extension.
REPO_PATH = re.compile(
    r"\b((?:shared|services|infra|tests|schemas|helm|docs|examples)/[\w./-]*\w\.(?:py|md|avsc|yaml|json|sql|sh|mjs))\b"
)
# A bare test module name (`test_apns.py`), and a bare top-level document (`README.md`).
TEST_MODULE = re.compile(r"(?<![\w/])(test_\w+\.py)\b")
TOP_DOCUMENT = re.compile(r"(?<![\w/])([A-Z][A-Z_]+\.md)\b")


def test_every_setting_has_a_description() -> None:
    assert configuration.undocumented() == []


def test_a_setting_without_a_description_is_named() -> None:
    class BareSettings(HeraldSettings):
        described: int = Field(default=1, description="Has one.")
        bare: int = 2

    item = configuration.SettingsClass(BareSettings, ("test",))
    assert configuration.undocumented([item]) == [f"HERALD_BARE ({__name__}.BareSettings)"]


def test_the_configuration_reference_lists_every_variable_of_every_service() -> None:
    page = configuration.render()
    for item in configuration.settings_classes():
        for name in item.cls.model_fields:
            assert f"`HERALD_{name.upper()}`" in page, name
    readers = {reader for item in configuration.settings_classes() for reader in item.readers}
    services = {path.parent.name.replace("_", "-") for path in (REPO_ROOT / "services").glob("*/settings.py")}
    assert services <= readers


def test_the_kafka_reference_covers_every_topic_and_every_schema() -> None:
    assert set(kafka.TOPIC_DOCS) == set(kafka.topic_names(Topics("herald")))
    assert {doc.contract for doc in kafka.TOPIC_DOCS.values()} == {path.stem for path in SCHEMA_DIR.glob("*.avsc")}
    page = kafka.render()
    for topic in Topics("herald").all():
        assert f"`{topic}`" in page


def test_the_metrics_reference_lists_every_metric() -> None:
    page = metrics.render()
    assert len(metrics.declared()) > 20
    for metric in metrics.declared():
        assert f"`{metric._name}" in page


def _named_files() -> list[tuple[str, list[str]]]:
    """Each file a source names, with the glob patterns (from the repository) it may be found at."""
    named = []
    for pattern in NAMING_SOURCES:
        for path in REPO_ROOT.glob(pattern):
            text = path.read_text()
            source = str(path.relative_to(REPO_ROOT))
            folder = str(path.parent.relative_to(REPO_ROOT))
            named += [(source, [match]) for match in REPO_PATH.findall(text)]
            named += [(source, [f"tests/**/{match}"]) for match in TEST_MODULE.findall(text)]
            # A document is named from beside it or from the repository's root.
            named += [(source, [match, f"{folder}/{match}"]) for match in TOP_DOCUMENT.findall(text)]
    return named


def test_every_file_the_code_and_docs_name_exists() -> None:
    missing = [
        f"{source}: {places[0]}"
        for source, places in _named_files()
        if not any(any(REPO_ROOT.glob(place)) for place in places)
    ]
    assert missing == []
