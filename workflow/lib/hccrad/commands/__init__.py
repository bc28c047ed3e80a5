"""What the ``hccrad`` subcommands run, one module per command (:mod:`hccrad.cli` parses).

Importing this package imports none of its modules: each name below is imported from its module
on first use (PEP 562), so a command loads only what it runs — ``hccrad voxelmaps`` neither the
audit's statistics (scikit-learn) nor the cohort sheets and studies.
"""

from __future__ import annotations

from hccrad.lazy import lazy_attributes

#: Public name -> the module of this package that defines it.
_LAZY = {
    "run_audit_compare": "audit",
    "run_audit_privacy": "audit",
    "run_audit_run": "audit",
    "run_ibsi": "ibsi",
    "run_sheet": "sheet",
    "run_synth": "synth",
    "format_plan": "validate",
    "run_validate": "validate",
    "run_voxelmaps": "voxelmaps",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = sorted(_LAZY)
