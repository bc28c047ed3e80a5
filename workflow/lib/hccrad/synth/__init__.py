"""Embedded synthetic multi-center HCC CT/MRI cohort (the demo and test data of hccrad).

Public API::

    from hccrad.synth import write_cohort, generate_patient, SynthOptions, true_relative_transform

See ``docs/synthetic_cohort.md`` for the generating equations, effect sizes, file layout and the
motion convention.
"""

from hccrad.synth.anatomy import Habitat, Tissue
from hccrad.synth.biology import COEF, NULL_PERMUTED_COLUMNS, patient_id
from hccrad.synth.cohort import (
    CLINICAL_COLUMNS,
    COHORT_COLUMNS,
    MOTION_TSV_COLUMNS,
    SynthOptions,
    SynthPatient,
    clinical_tables,
    generate_patient,
    mask_availability,
    null_permutation,
    sample_patient_biology,
    write_cohort,
)
from hccrad.synth.imaging import PHASES, SCANNERS, Motion, true_relative_transform

__all__ = [
    "CLINICAL_COLUMNS",
    "COEF",
    "COHORT_COLUMNS",
    "MOTION_TSV_COLUMNS",
    "NULL_PERMUTED_COLUMNS",
    "PHASES",
    "SCANNERS",
    "Habitat",
    "Motion",
    "SynthOptions",
    "SynthPatient",
    "Tissue",
    "clinical_tables",
    "generate_patient",
    "mask_availability",
    "null_permutation",
    "patient_id",
    "sample_patient_biology",
    "true_relative_transform",
    "write_cohort",
]
