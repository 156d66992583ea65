"""Typed lesson configs: a dataclass per lesson, profiles, and `--key=value` overrides.

Every number a lesson takes carries its valid range in its type (`epochs: Count = 10`,
`lr: Positive = 1e-3`, `hidden_sizes: list[Count]`): `make_config` checks defaults, profiles,
a resumed run's settings and the command line against it before any data is read, so
`--epochs=-3` is refused with a message naming the setting, not by a scheduler an hour later.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from typing import Annotated


class ConfigError(ValueError):
    """A bad override: the message names the key and what was expected."""


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric setting may take: from `low` to `high`, `low` itself excluded if `above`."""

    low: float | None = None
    high: float | None = None
    above: bool = False  # low < value instead of low <= value

    def problem(self, value) -> str | None:
        """None for a valid value, else what the value must be."""
        if isinstance(value, float) and not math.isfinite(value):
            return "a finite number"
        too_low = self.low is not None and (value <= self.low if self.above else value < self.low)
        too_high = self.high is not None and value > self.high
        if not (too_low or too_high):
            return None
        low, high = _number(self.low), _number(self.high)
        if self.high is None:
            return f"{'above' if self.above else 'at least'} {low}"
        return f"{'above' if self.above else 'from'} {low} {'and at most' if self.above else 'to'} {high}"


# The ranges lessons use. A setting where 0 means "off" or "the same as another" is a Size or NonNegative.
Count = Annotated[int, Range(1)]                 # epochs, batch sizes, widths, images: at least one
Size = Annotated[int, Range(0)]                  # a count where 0 means none (or: as another setting)
Positive = Annotated[float, Range(0, above=True)]  # learning rates, scales
NonNegative = Annotated[float, Range(0)]         # weight decay, clipping, augmentation strengths
Fraction = Annotated[float, Range(0, 1)]         # shares of a dataset, dropout, label smoothing
Decay = Fraction                                 # momentum-like factors
Seed = Annotated[int, Range(0, 2**32 - 1)]       # what NumPy's seeding accepts


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
    if typing.get_origin(kind) in (list, tuple):
        return f"list[{_type_name(typing.get_args(kind)[0])}]"
    return getattr(kind, "__name__", str(kind).replace("typing.", ""))


def field_types(config_cls) -> dict[str, object]:
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


def field_ranges(config_cls) -> dict[str, Range]:
    """{setting: its Range} for every setting whose type (or list item type) carries one."""
    hints = typing.get_type_hints(config_cls, include_extras=True)
    ranges = {}
    for f in dataclasses.fields(config_cls):
        kind = hints[f.name]
        if typing.get_origin(kind) in (list, tuple):
            kind = typing.get_args(kind)[0]
        found = [m for m in getattr(kind, "__metadata__", ()) if isinstance(m, Range)]
        if found:
            ranges[f.name] = found[0]
    return ranges


def check_ranges(config) -> None:
    """Every numeric setting of `config` within its Range, else a ConfigError naming it."""
    for key, valid in field_ranges(type(config)).items():
        value = getattr(config, key)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            problem = valid.problem(item)
            if problem:
                raise ConfigError(f"--{key} must be {problem}" + (" for each value" if isinstance(value, list) else "")
                                  + f"; got {_show(value)}")


def _range_text(valid: Range) -> str:
    low = "" if valid.low is None else f"{'>' if valid.above else '>='}{_number(valid.low)}"
    return low if valid.high is None else f"{low}..{_number(valid.high)}".lstrip(">=")


def _number(value) -> str:
    return str(value) if value is None or isinstance(value, int) else f"{value:g}"


def _show(value) -> str:
    return ",".join(map(_number, value)) if isinstance(value, (list, tuple)) else _number(value)


def as_flags(settings: dict) -> list[str]:
    """The `--key=value` tokens that `make_config` reads back as `settings` (a recipe, a profile)."""
    def text(value) -> str:
        if isinstance(value, (list, tuple)):
            return ",".join(map(text, value))
        return str(value).lower() if isinstance(value, bool) else str(value)

    return [f"--{key}={text(value)}" for key, value in settings.items()]


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
    check_ranges(config)
    return config


def settings_help(config_cls, profiles: dict[str, dict]) -> str:
    """The lesson's settings with their defaults and per-profile values, for --help."""
    lines = []
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(config_cls)}
    ranges = field_ranges(config_cls)
    for key, kind in field_types(config_cls).items():
        per_profile = ", ".join(f"{p}={v[key]}" for p, v in profiles.items() if key in v)
        kind_text = _type_name(kind) + (f" {_range_text(ranges[key])}" if key in ranges else "")
        lines.append(f"  {f'--{key}={defaults[key]}':<28} {kind_text:<22} {per_profile}")
    return "\n".join(lines)
