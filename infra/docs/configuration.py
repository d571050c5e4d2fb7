"""The configuration reference: every ``HERALD_*`` variable, read from the settings classes themselves.

A settings class is any pydantic-settings class whose name ends in ``Settings`` in ``shared/``, in a
service's ``settings.py`` (and what it imports), or in the local stack (``infra/local/stack.py``). Each
field documents itself with ``Field(description=...)``; ``undocumented`` lists those that do not.
"""

from __future__ import annotations

import ast
import importlib
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode

from infra.docs.markdown import code, table
from shared.config import ENV_PREFIX

REPO_ROOT = Path(__file__).resolve().parents[2]
# Where settings classes live: every module of shared/, every service's settings, the local stack.
SETTINGS_SOURCES = ("shared/**/*.py", "services/**/settings.py", "infra/local/stack.py")
# What runs each class that is not a service's own: the topics job and `make up`.
RUNNERS = {
    "shared.kafka.admin": "topics job",
    "infra.local.stack": "make up",
}


@dataclass(frozen=True)
class SettingsClass:
    """One settings class and the programs that read it (the leaf classes that inherit from it)."""

    cls: type[BaseSettings]
    readers: tuple[str, ...]

    @property
    def own_fields(self) -> dict[str, FieldInfo]:
        """The fields this class declares itself (inherited ones are documented where they are declared)."""
        declared = vars(self.cls).get("__annotations__", {})
        return {name: info for name, info in self.cls.model_fields.items() if name in declared}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)


def _settings_class_names(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [node.name for node in tree.body if isinstance(node, ast.ClassDef) and node.name.endswith("Settings")]


def _reader_name(cls: type[BaseSettings]) -> str:
    module = cls.__module__
    if module in RUNNERS:
        return RUNNERS[module]
    # services.sender_email.settings -> sender-email
    return module.split(".")[1].replace("_", "-")


def settings_classes() -> list[SettingsClass]:
    """Every settings class, shared ones first, each with the programs that read it."""
    found: dict[type[BaseSettings], None] = {}
    for pattern in SETTINGS_SOURCES:
        for path in sorted(REPO_ROOT.glob(pattern)):
            names = _settings_class_names(path)
            if names:
                module = importlib.import_module(_module_name(path))
                for name in names:
                    candidate = getattr(module, name)
                    if isinstance(candidate, type) and issubclass(candidate, BaseSettings):
                        found[candidate] = None
    classes = list(found)
    # A program's own class is one no other settings class inherits from.
    leaves = [cls for cls in classes if not any(other is not cls and issubclass(other, cls) for other in classes)]
    described = [
        SettingsClass(cls, tuple(sorted({_reader_name(leaf) for leaf in leaves if issubclass(leaf, cls)})))
        for cls in classes
    ]
    # The shared classes first (the widest first), then each service's, then the tools'.
    layers = ("shared", "services", "infra")
    return sorted(
        described,
        key=lambda item: (layers.index(item.cls.__module__.split(".")[0]), -len(item.readers), item.cls.__module__),
    )


def _nested_models(annotation: Any) -> Iterator[type[BaseModel]]:
    for argument in typing.get_args(annotation):
        if isinstance(argument, type) and issubclass(argument, BaseModel):
            yield argument
        else:
            yield from _nested_models(argument)


def undocumented(classes: Sequence[SettingsClass] | None = None) -> list[str]:
    """``HERALD_*`` variables (and fields of their JSON values) without a description."""
    missing = []
    for item in settings_classes() if classes is None else classes:
        for name, info in item.own_fields.items():
            variable = ENV_PREFIX + name.upper()
            if not (info.description or "").strip():
                missing.append(f"{variable} ({item.cls.__module__}.{item.cls.__name__})")
            for model in _nested_models(info.annotation):
                missing += [
                    f"{variable}: {field}" for field, sub in model.model_fields.items() if not (sub.description or "")
                ]
    return missing


def _type_name(annotation: Any, info: FieldInfo) -> str:
    if NoDecode in info.metadata:
        return "comma-separated list"
    origin = typing.get_origin(annotation)
    arguments = [argument for argument in typing.get_args(annotation) if argument is not type(None)]
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(argument, info) for argument in arguments)
    if origin is typing.Literal:
        return "one of " + ", ".join(code(str(argument)) for argument in typing.get_args(annotation))
    if origin is dict:
        return "JSON object"
    if origin is list:
        return "JSON list"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", SecretStr: "secret", Path: "path"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _bounds(info: FieldInfo) -> str:
    words = {"ge": "at least", "gt": "above", "le": "at most", "lt": "below", "min_length": "at least"}
    shown = []
    for constraint in info.metadata:
        for attribute, word in words.items():
            value = getattr(constraint, attribute, None)
            if value is not None:
                unit = " characters" if attribute == "min_length" else ""
                shown.append(f"{word} {value}{unit}")
        pattern = getattr(constraint, "pattern", None)
        if pattern is not None:
            shown.append(f"matching {code(str(pattern))}")
    return ", ".join(shown)


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
    if value is None or value == "" or value == [] or value == {}:
        return "unset" if value is None or value == "" else code(str(value).replace("'", '"'))
    if isinstance(value, bool):
        return code(str(value).lower())
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, list):
        return code(",".join(str(item) for item in value))
    return code(str(value))


def _description(info: FieldInfo) -> str:
    text = (info.description or "").strip()
    bounds = _bounds(info)
    for model in _nested_models(info.annotation):
        entries = "; ".join(
            f"{code(name)}: {sub.description} ({_type_name(sub.annotation, sub)})"
            for name, sub in model.model_fields.items()
        )
        text += f" Each entry holds {entries}."
    return f"{text} ({bounds})" if bounds else text


def _section(item: SettingsClass) -> str:
    rows = [
        [code(ENV_PREFIX + name.upper()), _type_name(info.annotation, info), _default(info), _description(info)]
        for name, info in item.own_fields.items()
    ]
    # A program's own class is titled by the program, a shared one by the class.
    title = f"{item.readers[0]}: `{item.cls.__name__}`" if len(item.readers) == 1 else f"`{item.cls.__name__}`"
    readers = ", ".join(item.readers)
    source = f"{item.cls.__module__}.{item.cls.__name__}"
    return "\n\n".join(
        [f"## {title}", f"Read by: {readers} (`{source}`).", table(["variable", "type", "default", "what"], rows)]
    )


def render() -> str:
    """The whole configuration reference page."""
    intro = (
        "# Configuration reference\n\n"
        "Every setting is an environment variable with the `HERALD_` prefix (a `.env` file in the working "
        "directory is read too), validated at start-up: a bad value stops the service with a message naming "
        "the variable (`HERALD_SMTP_PORT: Input should be a valid integer (got 'abc')`), never echoing a "
        "secret's value. Lists are comma-separated (`HERALD_EMAIL_PROVIDERS=sendgrid,smtp`); JSON objects are "
        'JSON (`HERALD_DEDUP_WINDOWS={"otp": 300}`).\n\n'
        "This page is generated from the settings classes (`infra/docs/configuration.py`): each section is "
        "one class, with the programs that read it; a class's variables are listed once, where they are "
        "declared, and inherited by every program listed with it."
    )
    return "\n\n".join([intro, *(_section(item) for item in settings_classes())]) + "\n"
