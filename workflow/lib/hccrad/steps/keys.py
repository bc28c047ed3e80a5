"""Manifest keys of the per-patient jobs' files (:mod:`hccrad.manifest`).

Shared by the per-patient steps (:mod:`hccrad.patient`), the habitat steps that list the
per-subregion tensors, and the workflow's input functions; this module imports nothing of
``hccrad``, so any of them can import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Sequence


def mask_phase_order(phase: str, reference: str, phases: Sequence[str]) -> tuple[str, ...]:
    """The phases whose mask of a kind may stand for ``phase``, first choice first: its own, the
    reference phase's, then ``phases`` in order (every phase shares the registered grid, so a
    mask drawn on any phase reaches every phase). Used by the plan and by the jobs alike."""
    return tuple(dict.fromkeys((phase, reference, *phases)))


def key(phase: str, stage: str, name: str) -> str:
    """Manifest key of a per-phase file, e.g. ``AP/register/image``."""
    return f"{phase}/{stage}/{name}"


def deep_key(name: str, phase: str | None = None) -> str:
    """Manifest key of a deep-input tensor (per phase, or stacked over phases)."""
    return f"deep/{name}/{phase}" if phase else f"deep/{name}"


def subregion_key(name: str, phase: str, subregion: int) -> str:
    """Manifest key of a habitat subregion's deep-input tensor (``assign_habitats``)."""
    return f"{deep_key(name, phase)}/h{subregion}"
