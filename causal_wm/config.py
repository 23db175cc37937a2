"""One configuration system for every learner, script and the command line.

- A learner's settings are one dataclass with a docstring under every field (``ImageCRLConfig``,
  ``GScaleConfig``, ``WorldModelConfig``, ...). A config may contain another: the world model's
  ``crl`` field is the image CRL config, so one object describes the whole fit.
- Presets are named overrides of the defaults (``{"debug": {...}, "cpu": {...}}``), nested where a
  config contains another: ``{"crl": {"image_size": 16}, "mechanism_steps": 150}``.
- Overrides are the same: nested mappings, or dotted keys (``{"crl.max_per_regime": 20_000}``), or
  ``key=value`` strings from the command line (``--set crl.max_per_regime=20000``; values are read as
  JSON where they parse, as plain strings otherwise).
- ``config_dict`` gives the resolved config as plain JSON types, written into every result's
  diagnostics.
- ``add_config_arguments`` turns a config dataclass into ``--field-name`` options whose help is the
  field's docstring (scripts and ``causal-wm train-agent`` build their parsers with it).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import itertools
import json
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

__all__ = [
    "add_config_arguments",
    "apply_overrides",
    "config_dict",
    "config_from_args",
    "field_docs",
    "parse_assignments",
    "resolve_config",
]

C = TypeVar("C")


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under every field of a dataclass (read from its source), whitespace collapsed."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            # dedented: a dataclass defined inside a function or class has indented source
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):  # no source (e.g. built interactively): no help texts
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, after in itertools.pairwise(body):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) \
                    and isinstance(after.value.value, str):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def parse_assignments(items: Sequence[str] | None) -> dict[str, Any]:
    """``["crl.max_per_regime=20000", "route=pairs"]`` -> ``{"crl.max_per_regime": 20000, "route": "pairs"}``.

    Values are JSON where they parse (numbers, ``true``/``false``/``null``, lists, objects), plain
    strings otherwise. Raises ``ValueError`` for an item without ``=`` or with an empty key.
    """
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"a setting must look like key=value (e.g. crl.max_per_regime=20000), got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key] = value
    return out


def _nest(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys -> nested dicts (``{"a.b": 1, "c": 2}`` -> ``{"a": {"b": 1}, "c": 2}``)."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = str(key).split(".")
        here = nested
        for part in parts[:-1]:
            nxt = here.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ValueError(f"setting {key!r}: {part!r} is a value, not a group of settings")
            here = nxt
        last = parts[-1]
        if isinstance(value, Mapping):
            existing = here.setdefault(last, {})
            if not isinstance(existing, dict):
                raise ValueError(f"setting {key!r} is given both as a value and as a group of settings")
            existing.update(_nest(value))
        else:
            here[last] = value
    return nested


def _coerce(value: Any, annotation: str, name: str) -> Any:
    """Command-line and JSON values into the field's type where that is unambiguous (ints for a
    float field, numeric strings for a number field); everything else is left to the config's own
    validation."""
    kinds = {part.strip() for part in str(annotation).split("|")}
    if isinstance(value, str):
        if "int" in kinds and value.lstrip("-").isdigit():
            return int(value)
        if "float" in kinds:
            try:
                return float(value)
            except ValueError:
                pass
        if "bool" in kinds and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if "None" in kinds and value.lower() in ("none", "null"):
            return None
    if isinstance(value, int) and not isinstance(value, bool) and kinds == {"float"}:
        return float(value)
    return value


def apply_overrides(config: C, overrides: Mapping[str, Any] | None) -> C:
    """A copy of the dataclass ``config`` with ``overrides`` applied (nested mappings or dotted keys;
    a nested dataclass field takes a mapping of its own fields). Unknown keys raise ``ValueError``
    naming the known ones; the result is validated (``validate()`` or ``__post_init__``)."""
    if not overrides:
        return dataclasses.replace(config)  # type: ignore[type-var]
    nested = _nest(overrides)
    fields = {f.name: f for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    unknown = sorted(set(nested) - set(fields))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown} of {type(config).__name__}; known: {sorted(fields)}")
    changes: dict[str, Any] = {}
    for key, value in nested.items():
        current = getattr(config, key)
        if dataclasses.is_dataclass(current) and not isinstance(current, type):
            if not isinstance(value, Mapping):
                raise ValueError(f"setting {key!r} is a group of settings ({type(current).__name__}); give "
                                 f"its fields, e.g. {key}.<field>=value")
            changes[key] = apply_overrides(current, value)
        elif isinstance(value, Mapping) and not str(fields[key].type).startswith(("dict", "Mapping")):
            raise ValueError(f"setting {key!r} is a value, not a group of settings; set it as {key}=value")
        else:
            changes[key] = _coerce(value, fields[key].type, key)
    out = dataclasses.replace(config, **changes)  # type: ignore[type-var]
    validate = getattr(out, "validate", None)
    if callable(validate):
        validate()
    return out


def resolve_config(cls: type[C], presets: Mapping[str, Mapping[str, Any]], preset: str,
                   overrides: Mapping[str, Any] | None = None) -> C:
    """``cls()`` with the preset's overrides, then ``overrides`` on top (see ``apply_overrides``)."""
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(presets)}")
    return apply_overrides(apply_overrides(cls(), presets[preset]), overrides)


def config_dict(config: Any) -> dict[str, Any]:
    """The resolved config as plain JSON types (nested configs as nested dicts)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
                         defaults: Any = None) -> None:
    """One ``--field-name`` option per field of the dataclass ``cls``, its docstring as help (argparse
    adds the default). ``defaults``: an instance whose values are the defaults (e.g. a preset)."""
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if defaults is not None:
            default = getattr(defaults, f.name)
        else:
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            continue  # nested configs are set with --set group.field=value
        option = f"--{f.name.replace('_', '-')}"
        kinds = {part.strip() for part in str(f.type).split("|")}
        doc = docs.get(f.name, "").replace("%", "%%")  # argparse formats help with %
        # a docstring that states its own default (e.g. "default: a temporary folder") is not repeated
        says_default = "default" in doc.lower()
        help_text = doc if says_default else doc + " (default: %(default)s)"
        if kinds == {"bool"}:
            parser.add_argument(option, action=argparse.BooleanOptionalAction, default=default, help=help_text)
            continue
        if any(k.startswith(("dict", "list", "tuple")) for k in kinds):
            caster: Any = json.loads
            help_text = doc + (" (JSON)" if says_default else
                               " (JSON; default: " + json.dumps(default).replace("%", "%%") + ")")
        elif "int" in kinds and "float" not in kinds and "str" not in kinds:
            caster = int
        elif "float" in kinds and "str" not in kinds:
            caster = float
        else:
            caster = str
        parser.add_argument(option, type=caster, default=default, help=help_text)


def config_from_args(cls: type[C], args: argparse.Namespace, **fixed: Any) -> C:
    """The dataclass ``cls`` from the options ``add_config_arguments`` added (plus ``fixed`` values)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)  # type: ignore[arg-type]
              if hasattr(args, f.name)}
    values.update(fixed)
    return cls(**values)
