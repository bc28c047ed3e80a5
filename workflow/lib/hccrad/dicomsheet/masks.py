"""DICOM SEG and RTSTRUCT objects attached to the placed series they reference, for
``hccrad sheet``."""

from __future__ import annotations

from collections import defaultdict

from hccrad.dicomsheet.phasemap import PhaseMap
from hccrad.dicomsheet.scan import MaskObject, Scan


def attach_objects(
    scan: Scan, phase_map: PhaseMap
) -> dict[str, dict[str, tuple[MaskObject, list[tuple[int, str]]]]]:
    """Series UID -> mask kind -> (object, its segments of that kind), for the placed series;
    every object gets its outcome and reason."""
    attached: dict[str, dict[str, tuple[MaskObject, list[tuple[int, str]]]]] = defaultdict(dict)
    for obj in sorted(scan.objects, key=lambda o: str(o.path)):
        refs = list(obj.referenced_series)
        if not refs:
            refs = list(
                dict.fromkeys(
                    scan.sop_series[u] for u in obj.referenced_sops if u in scan.sop_series
                )
            )
        known = [scan.series[u] for u in refs if u in scan.series]
        if not known:
            obj.outcome = "skipped"
            obj.reason = (
                "references no series" if not refs else "referenced series not found in the tree"
            )
            continue
        placed = [s for s in known if s.outcome == "placed"]
        if len(placed) != 1:
            obj.outcome = "skipped"
            obj.reason = (
                f"references {', '.join(s.label() for s in known)}, not in the sheet ("
                + "; ".join(s.reason for s in known)
                + ")"
                if not placed
                else f"references {len(placed)} series of the sheet"
            )
            continue
        target = placed[0]
        by_kind: dict[str, list[tuple[int, str]]] = defaultdict(list)
        notes = []
        for number, name in obj.segments:
            kind = phase_map.mask_kind(name)
            if kind is None:
                notes.append(f"not mapped: {name!r}")
            elif "+" in name and obj.kind != "SEG":
                notes.append(f"not selectable ('+' in the name): {name!r}")
            else:
                by_kind[kind].append((number, name))
        used = []
        for kind in ("tumor", "liver"):
            if kind not in by_kind:
                continue
            if kind in attached[target.uid]:
                earlier = attached[target.uid][kind][0]
                notes.append(f"{kind}_mask of {target.phase} already from {earlier.path.name}")
                continue
            attached[target.uid][kind] = (obj, by_kind[kind])
            used.append(f"{kind}_mask: {segment_cell(obj, by_kind[kind])}")
        obj.phase = target.phase
        if used:
            obj.outcome = "used"
            obj.reason = f"on {target.label()}; " + "; ".join(used + notes)
        else:
            obj.outcome = "skipped"
            segments = ", ".join(repr(n) for _, n in obj.segments) or "none"
            obj.reason = f"on {target.label()}; no segment gives a mask (segments: {segments})"
            if notes:
                obj.reason += "; " + "; ".join(notes)
    return attached


def segment_cell(obj: MaskObject, segments: list[tuple[int, str]]) -> str:
    """The ``*_segment`` cell: the names joined by ``+`` (SEG segment numbers where a name holds
    a ``+`` or is not unique within the object)."""
    names = [n.lower() for _, n in obj.segments]
    parts = []
    for number, name in segments:
        unique = names.count(name.lower()) == 1
        parts.append(name if ("+" not in name and unique) or obj.kind != "SEG" else str(number))
    return "+".join(parts)
