"""Phase map of ``hccrad sheet``: which SeriesDescription names which phase, which names no
study phase, the acquisition-time rule's setting and which segment names give which mask
(docs/dicom_sheet.md)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from hccrad.errors import InputError

MODALITY_PHASES: dict[str, tuple[str, ...]] = {
    "MR": ("AP", "PVP", "HBP", "DP"),
    "CT": ("AP", "PVP"),
}
REFERENCE_PHASE = "AP"
#: The order in which the phases are acquired after the contrast injection.
TEMPORAL_ORDER = ("AP", "PVP", "DP", "HBP")
PHASE_MAP_FILE = "phase_map.yaml"
_SEPARATORS = r"[\s_\-/]*"


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Case-insensitive regex of one phase-map pattern: at word boundaries (no letter or digit
    before or after), any blank, ``-``, ``_`` or ``/`` inside it matching any run of those or
    nothing."""
    words = [re.escape(w) for w in re.split(r"[\s_\-/]+", pattern.strip()) if w]
    if not words:
        raise ValueError("empty pattern")
    return re.compile(
        r"(?<![a-z0-9])" + _SEPARATORS.join(words) + r"(?![a-z0-9])", flags=re.IGNORECASE
    )


@dataclass(frozen=True)
class PhaseMap:
    """Naming rules of ``hccrad sheet``: description patterns per phase, patterns of series that
    are no study phase, the acquisition-time rule and segment-name patterns per mask kind."""

    phases: dict[str, tuple[str, ...]]
    not_a_phase: tuple[str, ...]
    hbp_after_minutes: float
    tumor: tuple[str, ...]
    liver: tuple[str, ...]
    source: str = "default"
    _regex: dict[str, re.Pattern[str]] = field(default_factory=dict, repr=False, compare=False)

    def _match(self, text: str, patterns: Iterable[str]) -> list[str]:
        hits = []
        for p in patterns:
            rx = self._regex.get(p)
            if rx is None:
                rx = self._regex[p] = _pattern_regex(p)
            if rx.search(text):
                hits.append(p)
        return hits

    def not_a_phase_match(self, description: str) -> str | None:
        """The first ``not_a_phase`` pattern ``description`` matches, else None."""
        hits = self._match(description, self.not_a_phase)
        return hits[0] if hits else None

    def phase_matches(self, description: str) -> dict[str, list[str]]:
        """Phase -> the patterns of that phase ``description`` matches (phases without a match
        left out)."""
        out = {}
        for phase, patterns in self.phases.items():
            hits = self._match(description, patterns)
            if hits:
                out[phase] = hits
        return out

    def mask_kind(self, name: str) -> str | None:
        """``tumor`` or ``liver`` for a segment / ROI name, else None (tumor patterns first)."""
        if self._match(name, self.tumor):
            return "tumor"
        if self._match(name, self.liver):
            return "liver"
        return None


def default_phase_map_text() -> str:
    """The YAML text of the default phase map shipped with the package (with its comments)."""
    return resources.files("hccrad.dicomsheet").joinpath(PHASE_MAP_FILE).read_text(encoding="utf-8")


def _string_list(value: Any, where: str, source: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise InputError(f"phase map key {where}: expected a list of strings", file=source)
    out = tuple(str(v) for v in value)
    for v in out:
        try:
            _pattern_regex(v)
        except ValueError:
            raise InputError(f"phase map key {where}: empty pattern", file=source) from None
    return out


def load_phase_map(path: str | Path | None = None) -> PhaseMap:
    """Read a phase map (YAML, see :func:`default_phase_map_text`); None: the default.

    Raises:
        InputError: unreadable file, unknown keys or phases, values of the wrong type.
    """
    source = "default" if path is None else str(path)
    try:
        text = default_phase_map_text() if path is None else Path(path).read_text("utf-8")
        data = yaml.safe_load(text)
    except OSError as exc:
        raise InputError(f"cannot read the phase map ({exc})", file=source) from exc
    except yaml.YAMLError as exc:
        raise InputError(f"phase map is not valid YAML ({exc})", file=source) from exc
    if not isinstance(data, dict):
        raise InputError("phase map must be a YAML mapping", file=source)
    unknown = sorted(set(data) - {"phases", "not_a_phase", "time_rule", "masks"})
    if unknown:
        raise InputError(
            f"unknown phase map key(s) {unknown} (known: phases, not_a_phase, time_rule, masks)",
            file=source,
        )
    phases_raw = data.get("phases") or {}
    if not isinstance(phases_raw, dict):
        raise InputError("phase map key phases: expected a mapping phase -> list", file=source)
    bad = sorted(set(phases_raw) - set(TEMPORAL_ORDER))
    if bad:
        raise InputError(
            f"phase map key phases: unknown phase(s) {bad} (known: {', '.join(TEMPORAL_ORDER)})",
            file=source,
        )
    phases = {p: _string_list(v, f"phases.{p}", source) for p, v in phases_raw.items()}
    time_rule = data.get("time_rule") or {}
    hbp = time_rule.get("hbp_after_minutes", 10) if isinstance(time_rule, dict) else None
    if isinstance(hbp, bool) or not isinstance(hbp, int | float) or hbp <= 0:
        raise InputError(
            "phase map key time_rule.hbp_after_minutes: expected a positive number", file=source
        )
    masks = data.get("masks") or {}
    if not isinstance(masks, dict) or set(masks) - {"tumor", "liver"}:
        raise InputError("phase map key masks: expected keys tumor and liver", file=source)
    return PhaseMap(
        phases=phases,
        not_a_phase=_string_list(data.get("not_a_phase") or [], "not_a_phase", source),
        hbp_after_minutes=float(hbp),
        tumor=_string_list(masks.get("tumor") or [], "masks.tumor", source),
        liver=_string_list(masks.get("liver") or [], "masks.liver", source),
        source=source,
    )
