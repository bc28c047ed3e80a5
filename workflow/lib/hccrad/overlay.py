"""A configuration overlay: values changed for one kind of run (the demo on 2 CPU cores), kept
apart from the full-scale design, and listed wherever results are shown.

The study files and ``config/config.yaml`` state the papers' designs at full scale. An overlay
file (config key ``overlay``; ``config/demo.yaml`` for ``make demo`` and the tests) holds::

    reason: why these values differ (shown in the report)
    config: {...}          # deep-merged over the workflow configuration
    studies:               # deep-merged over each study (after its defaults)
      habitat_grade: {...}

Every leaf of the overlay becomes a :class:`Change` (where, key, the full-scale value, the value
of this run), so the summary and the report can say "scaled for the demo: ResNet-10, 4 epochs;
paper: ResNet-18, 200 epochs".
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hccrad.errors import ConfigError

#: Marker of a key the full-scale configuration does not set.
UNSET = "(not set)"


def deep_merge(base: Mapping[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    """``delta`` merged over ``base``: mappings merge recursively, any other value replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in delta.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class Change:
    """One value an overlay changed: ``where`` (``config`` or a study), the dotted ``key``, the
    full-scale value and the value of this run."""

    where: str
    key: str
    full_scale: Any
    value: Any

    def as_row(self) -> dict[str, Any]:
        """A table row (``where, key, this_run, full_scale``; values as YAML-like text)."""
        return {
            "where": self.where,
            "key": self.key,
            "this_run": _text(self.value),
            "full_scale": _text(self.full_scale),
        }


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    if value is None:
        return "null"
    return str(value)


def _leaves(delta: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in delta.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, path)
        else:
            yield path, value


def _lookup(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, Mapping) or part not in data:
            return UNSET
        data = data[part]
    return data


def changes(where: str, base: Mapping[str, Any], delta: Mapping[str, Any]) -> tuple[Change, ...]:
    """The leaves of ``delta`` whose value differs from ``base`` (full scale) as changes."""
    out = []
    for key, value in _leaves(delta):
        full = _lookup(base, key)
        if full != value:
            out.append(Change(where, key, full, value))
    return tuple(out)


@dataclass(frozen=True)
class Overlay:
    """An overlay file: its path, reason, config delta and per-study deltas."""

    path: str
    reason: str
    config: dict[str, Any] = field(default_factory=dict)
    studies: dict[str, dict[str, Any]] = field(default_factory=dict)

    def study(self, name: str) -> dict[str, Any]:
        """The delta of study ``name`` (empty when the overlay leaves it alone)."""
        return self.studies.get(name, {})


def parse_overlay(path: str | Path, data: Any) -> Overlay:
    """The overlay of file ``path`` from its parsed YAML ``data`` (keys ``reason``, ``config``,
    ``studies``; :func:`hccrad.config.read_overlay` reads the file).

    Raises:
        ConfigError: other keys or types.
    """
    p = Path(path)
    data = data or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"overlay {p}: the top level must be a mapping")
    unknown = sorted(set(data) - {"reason", "config", "studies"})
    if unknown:
        raise ConfigError(f"overlay {p}: unknown key(s) {unknown} (reason, config, studies)")
    for key in ("config", "studies"):
        if not isinstance(data.get(key, {}), Mapping):
            raise ConfigError(f"overlay {p}: {key} must be a mapping")
    studies = data.get("studies") or {}
    for name, delta in studies.items():
        if not isinstance(delta, Mapping):
            raise ConfigError(f"overlay {p}: studies.{name} must be a mapping")
    if "overlay" in (data.get("config") or {}):
        raise ConfigError(f"overlay {p}: an overlay cannot name another overlay")
    return Overlay(
        path=str(p),
        reason=str(data.get("reason") or "").strip(),
        config=dict(data.get("config") or {}),
        studies={str(k): dict(v) for k, v in studies.items()},
    )
