"""Error types that name the patient, phase, file, row and column an error is about."""

from __future__ import annotations

from pathlib import Path


class HccradError(Exception):
    """Base class of every error hccrad raises on purpose."""


class InputError(HccradError):
    """Bad input: a missing or unreadable file, a mask that does not fit its image, a bad sheet row.

    The message is prefixed with whatever context is known, e.g.
    ``patient AMR003, phase AP, file /data/a.nii.gz: mask is empty``.
    """

    def __init__(
        self,
        message: str,
        *,
        patient: str | None = None,
        phase: str | None = None,
        file: str | Path | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.patient = patient
        self.phase = phase
        self.file = str(file) if file is not None else None
        self.row = row
        self.column = column
        self.reason = message
        parts = []
        if row is not None:
            parts.append(f"row {row}")
        if patient is not None:
            parts.append(f"patient {patient}")
        if phase is not None:
            parts.append(f"phase {phase}")
        if column is not None:
            parts.append(f"column {column!r}")
        if file is not None:
            parts.append(f"file {self.file}")
        prefix = ", ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ConfigError(HccradError):
    """The configuration does not validate or holds an inconsistent combination of values."""
