"""Reading the chart's rendered manifests in infra/checks/check_deploy.sh's checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

Document = dict[str, Any]


def loader(work: Path) -> Callable[[str], list[Document]]:
    """``load(name)``: the documents of ``work/<name>.yaml`` (one ``helm template`` render), empty ones left out."""

    def load(name: str) -> list[Document]:
        return [d for d in yaml.safe_load_all((work / f"{name}.yaml").read_text()) if d]

    return load


def of_kind(docs: list[Document], kind: str) -> list[Document]:
    """The documents of one kind."""
    return [d for d in docs if d["kind"] == kind]


def component(doc: Document) -> str | None:
    """The Herald component a document belongs to (its app.kubernetes.io/component label)."""
    component_label: str | None = doc["metadata"]["labels"].get("app.kubernetes.io/component")
    return component_label
