"""Typed lesson configs: a dataclass per lesson, profiles, and `--key=value` overrides."""

from __future__ import annotations

import dataclasses
import json
import types
import typing


class ConfigError(ValueError):
    """A bad override: the message names the key and what was expected."""


def _parse(raw: str, kind, key: str):
    origin = typing.get_origin(kind)
    if origin is typing.Literal:
        return _choice(raw, kind, key)
    if origin in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        if raw.lower() in ("none", "null", ""):
            return None
        return _parse(raw, options[0], key)
    if kind is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"--{key} expects true or false, got {raw!r}")
    if kind in (int, float, str):
        try:
            return kind(raw)
        except ValueError:
            raise ConfigError(f"--{key} expects {kind.__name__}, got {raw!r}") from None
    if origin in (list, tuple):
        try:
            value = json.loads(raw) if raw.startswith("[") else [v for v in raw.split(",") if v]
            (item_kind,) = set(typing.get_args(kind)) - {Ellipsis} or {str}
            return [_parse(str(v), item_kind, key) for v in value]
        except (ValueError, json.JSONDecodeError):
            raise ConfigError(f"--{key} expects a comma-separated list, got {raw!r}") from None
    raise ConfigError(f"--{key}: unsupported type {kind}")


def _choice(value, kind, key: str):
    """A value of a `Literal[...]` setting: one of the declared values, or a clear error."""
    allowed = typing.get_args(kind)
    for option in allowed:
        if str(option) == str(value):
            return option
    raise ConfigError(f"--{key} is one of {', '.join(map(str, allowed))}; got {value!r}")


def _type_name(kind) -> str:
    if typing.get_origin(kind) is typing.Literal:
        return "|".join(map(str, typing.get_args(kind)))
    return getattr(kind, "__name__", str(kind).replace("typing.", ""))


def field_types(config_cls) -> dict[str, object]:
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


def make_config(config_cls, profile: dict, overrides: list[str], base: dict | None = None):
    """Build a config: defaults, then `base` (a resumed run's config), then profile, then overrides.

    `overrides` are raw command-line tokens: `--key=value` or `--key value`.
    """
    kinds = field_types(config_cls)
    values = dict(base or profile)
    tokens = list(overrides)
    while tokens:
        token = tokens.pop(0)
        if not token.startswith("--"):
            raise ConfigError(f"unexpected argument {token!r}; overrides look like --key=value")
        key, sep, raw = token[2:].partition("=")
        key = key.replace("-", "_")
        if key not in kinds:
            raise ConfigError(f"unknown option --{key}; this lesson's settings are: "
                              + ", ".join(f"--{k}" for k in kinds))
        if not sep:
            if not tokens:
                raise ConfigError(f"--{key} needs a value (--{key}=VALUE)")
            raw = tokens.pop(0)
        values[key] = _parse(raw, kinds[key], key)
    unknown = set(values) - set(kinds)
    if unknown:
        raise ConfigError(f"saved or profile settings not in the config: {sorted(unknown)}")
    config = config_cls(**values)
    for key, kind in kinds.items():  # defaults and profiles are checked like the command line
        if typing.get_origin(kind) is typing.Literal:
            _choice(getattr(config, key), kind, key)
    return config


def describe(config_cls, profiles: dict[str, dict]) -> str:
    """The lesson's settings with their defaults and per-profile values, for --help."""
    lines = []
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(config_cls)}
    for key, kind in field_types(config_cls).items():
        per_profile = ", ".join(f"{p}={v[key]}" for p, v in profiles.items() if key in v)
        lines.append(f"  {f'--{key}={defaults[key]}':<28} {_type_name(kind):<14} {per_profile}")
    return "\n".join(lines)
