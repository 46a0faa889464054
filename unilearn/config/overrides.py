"""The dotted-override language: `model.moae.n_experts=4` parsed (the value as YAML) and applied
to a raw config dict, every key checked against the schema; plus the deep merge of config files
and the unknown-key report (with a did-you-mean) that loading gives for a file.

Schema-generic: the root model class is passed in, so this module does not import the schema.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from pydantic import BaseModel

from unilearn.config.base import ConfigError, did_you_mean

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def parse_override(text: str) -> tuple[str, Any]:
    """`model.moae.n_experts=4` -> ("model.moae.n_experts", 4); the value is parsed as YAML."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or key.startswith(".") or key.endswith(".") or ".." in key:
        raise ConfigError(f"override {text!r}: expected key.sub=value")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({e})") from None
    if isinstance(parsed, str) and _NUMBER.fullmatch(parsed):
        parsed = float(parsed)  # YAML 1.1 reads `1e-3` (no dot) as a string; it means a number
    return key, parsed


def deep_merge(base: dict[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """`new` merged into a copy of `base`: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _sub_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model class behind a field annotation, if it is one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _schema_of(annotation: Any) -> tuple[str, Any] | None:
    """("model", cls) for a section, ("dict", entry schema) for a free mapping, None for a leaf."""
    sub = _sub_model(annotation)
    if sub is not None:
        return ("model", sub)
    if getattr(annotation, "__origin__", None) is dict:
        return ("dict", _schema_of(annotation.__args__[1]))
    return None


def unknown_keys(raw: Any, root: type[BaseModel]) -> list[str]:
    """Every unknown key of a raw config dict, as `dotted.path: unknown key (did you mean ...)`.
    Pydantic reports them too, without the suggestion."""
    return _unknown_keys(raw, ("model", root), prefix="")


def _unknown_keys(raw: Any, schema: tuple[str, Any] | None, prefix: str) -> list[str]:
    if schema is None or not isinstance(raw, Mapping):
        return []
    kind, inner = schema
    problems = []
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if kind == "dict":
            problems += _unknown_keys(value, inner, prefix=f"{path}.")
        elif key not in inner.model_fields:
            problems.append(f"{path}: unknown key" + did_you_mean(str(key), inner.model_fields))
        else:
            sub = _schema_of(inner.model_fields[key].annotation)
            problems += _unknown_keys(value, sub, prefix=f"{path}.")
    return problems


def apply_overrides(
    base: dict[str, Any], pairs: Iterable[tuple[str, Any]], root: type[BaseModel]
) -> dict[str, Any]:
    """Set dotted keys in a copy of a raw config dict of schema `root`. Every key must exist in
    the schema, except the entry names of free mappings (a new experiment, a sweep). Inside a
    mapping of plain values (`experiments.X.overrides`, `sweeps`) the rest of the path is one
    dotted key. A mapping value is merged into the section it replaces."""
    out = copy.deepcopy(base)
    for key, value in pairs:
        parts = key.split(".")
        node: dict[str, Any] = out
        schema: tuple[str, Any] | None = ("model", root)
        i = 0
        while True:
            part = parts[i]
            here = ".".join(parts[: i + 1])
            if schema is not None and schema[0] == "model":
                fields = schema[1].model_fields
                if part not in fields:
                    raise ConfigError(
                        f"override {key}: unknown key {here}" + did_you_mean(part, fields)
                    )
                schema = _schema_of(fields[part].annotation)
            elif schema is not None and schema[0] == "dict":
                if schema[1] is None:  # values are plain: the rest of the path is one key
                    part = ".".join(parts[i:])
                    i = len(parts) - 1
                schema = schema[1]
            if i == len(parts) - 1:
                if isinstance(value, Mapping) and isinstance(node.get(part), dict):
                    node[part] = deep_merge(node[part], value)
                else:
                    node[part] = copy.deepcopy(value)
                break
            if schema is None:
                raise ConfigError(f"override {key}: {here} is a value, not a section")
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {key}: {here} is a value, not a section")
            node = child
            i += 1
    return out
