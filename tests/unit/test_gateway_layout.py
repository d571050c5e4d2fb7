"""The gateway's shape, read from its source: routes get collaborators as typed dependencies
(services/gateway/deps.py), never from ``app.state``, and route modules do not import each other."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("clean_environment")]

GATEWAY = Path(__file__).resolve().parents[2] / "services" / "gateway"
# The one module that stores the collaborators on the app and reads them back.
CONTAINER = GATEWAY / "deps.py"


def modules() -> list[Path]:
    found = sorted(GATEWAY.rglob("*.py"))
    assert len(found) > 30
    return found


def state_reads(source: str) -> list[int]:
    """The lines of ``source`` that touch an ``app.state`` or ``request.state`` (``getattr`` included)."""
    return sorted(
        node.lineno
        for node in ast.walk(ast.parse(source))
        if (isinstance(node, ast.Attribute) and node.attr == "state")
        or (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in {"getattr", "setattr"}
            and any(isinstance(arg, ast.Constant) and arg.value == "state" for arg in node.args)
        )
    )


def test_the_state_check_finds_what_it_looks_for() -> None:
    source = "x = request.app.state.producer\ny = getattr(app, 'state')\nz = state\n"
    assert state_reads(source) == [1, 2]


def test_no_gateway_module_reads_app_state_but_the_container() -> None:
    """A route needing a collaborator takes it as a parameter typed with an alias of deps.py."""
    found = {
        str(path.relative_to(GATEWAY)): lines
        for path in modules()
        if path != CONTAINER and (lines := state_reads(path.read_text()))
    }
    assert found == {}
    assert state_reads(CONTAINER.read_text())


def imported(path: Path) -> set[str]:
    """The modules ``path`` imports, absolute, a ``from package import module`` counted as the module."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_route_modules_do_not_import_each_other() -> None:
    """What two resources share lives in services/gateway/http/, shared/, or a resource's service or schemas."""
    routes = [path for path in modules() if path.name == "routes.py"]
    assert len(routes) >= 10
    offenders = {
        str(path.relative_to(GATEWAY)): sorted(name for name in imported(path) if name.endswith(".routes"))
        for path in routes
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_every_route_parameter_is_typed() -> None:
    """Each parameter of every route function has an annotation, so mypy checks what the route uses."""
    app = create_app(GatewaySettings())
    endpoints = {
        context.original_route.endpoint
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
    }
    assert len(endpoints) > 30
    untyped = [
        f"{endpoint.__module__}.{endpoint.__name__}({name})"
        for endpoint in endpoints
        for name, parameter in inspect.signature(endpoint).parameters.items()
        if parameter.annotation is inspect.Parameter.empty
    ]
    assert untyped == []
