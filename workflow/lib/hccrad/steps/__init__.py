"""File-level pipeline steps: each reads its inputs, calls the algorithms, writes its outputs.

Workflow scripts call exactly one of these. Every output is written atomically
(:mod:`hccrad.fileio`), so a failed step never leaves a half-written file; every input problem
raises :class:`~hccrad.errors.InputError` naming the patient, phase and file.

Modules, one per stage of the workflow:

* :mod:`~hccrad.steps.preprocessing` — conversion, resampling, N4, registration, masks, intensity
  normalisation, tumor regions, per-patient QC, cohort summary;
* :mod:`~hccrad.steps.radiomics` — whole-region features, cohort tables, inter-reader ICC;
* :mod:`~hccrad.steps.habitats` — voxel maps, clustering, the cohort's k, subregions;
* :mod:`~hccrad.steps.deep_inputs` — the deep models' input tensors;
* :mod:`~hccrad.steps.segmentation` — the liver and tumor U-Net;
* :mod:`~hccrad.steps.deep_models` — the studies' deep models;
* :mod:`~hccrad.steps.keys` — manifest keys shared with :mod:`hccrad.patient`.

Importing this package does not import torch (the Snakefile imports it): the deep-learning
modules are imported inside the steps that use them.
"""

from hccrad.steps.deep_inputs import build_deep_input, build_subregion_inputs
from hccrad.steps.deep_models import (
    deep_gradcam,
    deep_model_outputs,
    deep_subregion_gradcam,
    deep_subregion_outputs,
    is_untrained,
    train_deep_model,
    train_subregion_models,
)
from hccrad.steps.habitats import (
    HabitatAssignment,
    aggregate_habitats,
    assign_habitats,
    cluster_habitats,
    compute_voxel_maps,
    habitat_feature_matrix,
    select_habitat_k,
)
from hccrad.steps.preprocessing import (
    carry_mask,
    cohort_summary,
    convert_image,
    correct_bias,
    dice,
    image_center,
    make_tumor_regions,
    normalize_image,
    patient_qc,
    qc_table,
    register_phase,
    resample_image,
    rigid_parameters,
    split_named_inputs,
)
from hccrad.steps.radiomics import aggregate_radiomics, extract_radiomics, reader_icc
from hccrad.steps.segmentation import (
    evaluate_segmentation,
    segment_patient,
    segmentation_holdout,
    train_segmentation,
)

__all__ = [
    "HabitatAssignment",
    "aggregate_habitats",
    "aggregate_radiomics",
    "assign_habitats",
    "build_deep_input",
    "build_subregion_inputs",
    "carry_mask",
    "cluster_habitats",
    "cohort_summary",
    "compute_voxel_maps",
    "convert_image",
    "correct_bias",
    "deep_gradcam",
    "deep_model_outputs",
    "deep_subregion_gradcam",
    "deep_subregion_outputs",
    "dice",
    "evaluate_segmentation",
    "extract_radiomics",
    "habitat_feature_matrix",
    "image_center",
    "is_untrained",
    "make_tumor_regions",
    "normalize_image",
    "patient_qc",
    "qc_table",
    "reader_icc",
    "register_phase",
    "resample_image",
    "rigid_parameters",
    "segment_patient",
    "segmentation_holdout",
    "select_habitat_k",
    "split_named_inputs",
    "train_deep_model",
    "train_segmentation",
    "train_subregion_models",
]
