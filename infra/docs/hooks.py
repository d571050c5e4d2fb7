"""MkDocs hooks (``mkdocs.yml``): the generated parts of the site, made from the code at build time.

A page asks for a generated part with a marker line, ``<!-- herald:configuration -->``; the OpenAPI
document is added as ``reference/openapi.json`` for the API reference page to render, and the AsyncAPI
document as ``reference/asyncapi.yaml`` with the schemas it refers to.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

from infra.docs import asyncapi, configuration, kafka, metrics
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings

OPENAPI_PATH = "reference/openapi.json"
GENERATED: dict[str, Callable[[], str]] = {
    "configuration": configuration.render,
    "kafka": kafka.render,
    "metrics": metrics.render,
}
MARKER = re.compile(r"^<!-- herald:(?P<name>[a-z]+) -->$", re.MULTILINE)


def openapi_document() -> str:
    """The gateway's OpenAPI document, as the running gateway serves it at ``/openapi.json``."""
    return json.dumps(create_app(GatewaySettings()).openapi(), indent=2)


def on_files(files: Files, config: MkDocsConfig, **_: Any) -> Files:
    """Add the OpenAPI and AsyncAPI documents to the site."""
    files.append(File.generated(config, OPENAPI_PATH, content=openapi_document()))
    for path, content in asyncapi.site_files().items():
        files.append(File.generated(config, path, content=content))
    return files


def on_page_markdown(markdown: str, page: Page, **_: Any) -> str:
    """Replace each marker with its generated Markdown; an unknown marker fails the build."""

    def generate(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in GENERATED:
            raise ValueError(f"{page.file.src_uri}: no generated part called {name!r}")
        return GENERATED[name]()

    return MARKER.sub(generate, markdown)
