"""Phases of the image series of one study for ``hccrad sheet``: series checks, description
patterns, the choice between two series of one phase and the acquisition-time rule."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from hccrad.dicomsheet.phasemap import (
    MODALITY_PHASES,
    REFERENCE_PHASE,
    TEMPORAL_ORDER,
    PhaseMap,
)
from hccrad.dicomsheet.scan import Series


def _series_check(s: Series, min_slices: int, min_matrix: int) -> str | None:
    """Why ``s`` cannot be a study phase on its own merits (before its study is looked at)."""
    if any(v.upper() == "LOCALIZER" for v in s.image_type):
        return "localizer (ImageType LOCALIZER)"
    if s.images == 1:
        return "single slice"
    if s.images < min_slices:
        return f"only {s.images} slices (fewer than {min_slices})"
    if min(s.rows, s.columns) < min_matrix:
        return f"tiny images ({s.rows}x{s.columns}; fewer than {min_matrix} pixels a side)"
    if len(s.folders) > 1:
        return f"files spread over {len(s.folders)} folders"
    return None


def _preference(s: Series) -> tuple[Any, ...]:
    """Sort key: the series a phase keeps comes first (original before derived, thinner slices,
    more slices, lower series number, then UID)."""
    return (
        s.derived,
        s.thickness if s.thickness is not None else float("inf"),
        -s.images,
        s.number if s.number is not None else float("inf"),
        s.uid,
    )


def _why_kept(kept: Series, other: Series) -> str:
    if kept.derived != other.derived:
        return "original, not derived"
    if kept.thickness != other.thickness:
        return f"thinner slices, {kept.thickness:g} < {other.thickness or float('inf'):g} mm"
    if kept.images != other.images:
        return f"more slices, {kept.images} > {other.images}"
    return "lower series number"


def _describe(matches: dict[str, list[str]]) -> str:
    return " and ".join(f"{p} ({', '.join(repr(m) for m in hits)})" for p, hits in matches.items())


def assign_study(
    group: list[Series], modality: str, phase_map: PhaseMap, min_slices: int, min_matrix: int
) -> None:
    """Give every series of one study (one patient, one modality) its outcome, phase and reason."""
    phases = MODALITY_PHASES[modality]
    usable = []
    for s in group:
        reason = _series_check(s, min_slices, min_matrix)
        if reason is not None:
            s.outcome, s.reason = "skipped", reason
        else:
            usable.append(s)
    originals = Counter(s.orientation for s in usable if s.original)
    main = originals.most_common(1)[0][0] if originals else "axial"
    decided: dict[str, list[Series]] = defaultdict(list)
    undecided: list[tuple[Series, str]] = []
    for s in usable:
        if s.derived and s.orientation != main:
            s.outcome, s.reason = "skipped", f"derived reformat ({s.orientation}; study {main})"
            continue
        hit = phase_map.not_a_phase_match(s.description)
        if hit is not None:
            s.outcome = "skipped"
            s.reason = f"not a study phase (description matches {hit!r})"
            continue
        matches = phase_map.phase_matches(s.description)
        if len(matches) == 1:
            (phase, hits), *_ = matches.items()
            if phase not in phases:
                s.outcome = "skipped"
                s.reason = f"description names {phase} ({hits[0]!r}), not a {modality} phase"
            else:
                s.reason = f"description matches {', '.join(repr(h) for h in hits)}"
                decided[phase].append(s)
        elif matches:
            undecided.append((s, f"description matches {_describe(matches)}"))
        else:
            undecided.append((s, "description names no phase"))

    kept: dict[str, Series] = {}
    for phase, candidates in decided.items():
        ranked = sorted(candidates, key=_preference)
        best = kept[phase] = ranked[0]
        best.outcome, best.phase = "placed", phase
        for other in ranked[1:]:
            other.outcome = "skipped"
            other.reason = (
                f"second series for {phase}: kept {best.label()} ({_why_kept(best, other)})"
            )
    _time_rule(undecided, kept, modality, phase_map)


def _time_rule(
    undecided: list[tuple[Series, str]],
    kept: dict[str, Series],
    modality: str,
    phase_map: PhaseMap,
) -> None:
    """Phases of the series the description does not decide, by acquisition time
    (docs/dicom_sheet.md): in time order, each takes the first free phase of the modality in
    temporal order that comes after the previous one's, is consistent with the series whose
    description decided (not before an earlier phase's series, not after a later one's), and,
    on MR, is HBP exactly when acquired ``hbp_after_minutes`` or more after the anchor: the AP
    series when its description named it, else the study's first contrast series."""
    order = {p: i for i, p in enumerate(TEMPORAL_ORDER)}
    temporal = [p for p in TEMPORAL_ORDER if p in MODALITY_PHASES[modality]]
    timed = sorted(
        (x for x in undecided if x[0].time is not None), key=lambda x: (x[0].time, x[0].uid)
    )
    for s, why in undecided:
        if s.time is None:
            s.outcome, s.reason = "skipped", f"{why} and has no acquisition time"
    times = [s.time for s in kept.values() if s.time is not None] + [s.time for s, _ in timed]
    anchor_ap = kept.get(REFERENCE_PHASE)
    if anchor_ap is not None and anchor_ap.time is not None:
        first, anchor = anchor_ap.time, f"the {REFERENCE_PHASE} series"
    else:
        first, anchor = (min(times) if times else None), "the first contrast series"
    last = -1
    hbp_after = phase_map.hbp_after_minutes * 60
    for s, why in timed:
        assert s.time is not None and first is not None  # timed series only
        delta = (s.time - first).total_seconds()
        allowed = []
        for p in temporal:
            if p in kept or order[p] <= last:
                continue
            if modality == "MR" and (p == "HBP") != (delta >= hbp_after):
                continue
            if any(
                d.time is not None
                and (
                    (s.time < d.time and order[p] > order[dp])
                    or (s.time > d.time and order[p] < order[dp])
                )
                for dp, d in kept.items()
            ):
                continue
            allowed.append(p)
        if not allowed:
            s.outcome = "skipped"
            s.reason = (
                f"{why}; its acquisition time ({delta:+.0f} s from {anchor}) leaves no free phase"
            )
            continue
        s.outcome, s.phase = "placed", allowed[0]
        s.reason = f"{why}; by acquisition time, {delta:+.0f} s from {anchor}"
        last = order[allowed[0]]
