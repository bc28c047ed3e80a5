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

Importing this package imports none of its modules: each name below is imported from its module
on first use (PEP 562), so a job loads only the stage it runs (a preprocessing job never imports
torch, scikit-learn or the habitat code) while ``steps.assign_habitats`` keeps working.
"""

from __future__ import annotations

from hccrad.lazy import lazy_attributes

#: Public name -> the module of this package that defines it.
_LAZY = {
    "build_deep_input": "deep_inputs",
    "build_subregion_inputs": "deep_inputs",
    "bundle_gradcam": "deep_models",
    "bundle_outputs": "deep_models",
    "deep_gradcam": "deep_models",
    "deep_model_outputs": "deep_models",
    "is_untrained": "deep_models",
    "train_deep_model": "deep_models",
    "train_phase_models": "deep_models",
    "train_subregion_models": "deep_models",
    "HabitatAssignment": "habitats",
    "aggregate_habitats": "habitats",
    "assign_habitats": "habitats",
    "cluster_habitats": "habitats",
    "compute_voxel_maps": "habitats",
    "habitat_feature_matrix": "habitats",
    "select_habitat_k": "habitats",
    "carry_mask": "preprocessing",
    "cohort_summary": "preprocessing",
    "convert_image": "preprocessing",
    "correct_bias": "preprocessing",
    "dice": "preprocessing",
    "image_center": "preprocessing",
    "make_tumor_regions": "preprocessing",
    "normalize_image": "preprocessing",
    "patient_qc": "preprocessing",
    "qc_table": "preprocessing",
    "register_phase": "preprocessing",
    "resample_image": "preprocessing",
    "rigid_parameters": "preprocessing",
    "split_named_inputs": "preprocessing",
    "aggregate_radiomics": "radiomics",
    "extract_radiomics": "radiomics",
    "reader_icc": "radiomics",
    "evaluate_segmentation": "segmentation",
    "segment_patient": "segmentation",
    "train_segmentation": "segmentation",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


__all__ = sorted(_LAZY)
