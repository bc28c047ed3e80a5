"""Where a study's files are: the tables it reads and the files :func:`run_study` writes."""

from __future__ import annotations

from hccrad import paths
from hccrad.studies.spec import StudySpec


def study_dir(name: str) -> str:
    """``results/cohort/studies/{name}``."""
    return paths.cohort_path("studies", name)


def radiomics_table(name: str, params: str | None = None) -> str:
    """A cohort radiomics table: ``results/cohort/radiomics/{name}`` for the modalities' default
    parameter files, ``results/cohort/radiomics/{params}/{name}`` for a study's own parameter
    file named ``params`` (its file name without the extension; ``"{params}"`` gives the rules'
    output pattern)."""
    return paths.cohort_path("radiomics", name if params is None else f"{params}/{name}")


def study_inputs(
    spec: StudySpec, clinical: str, radiomics_params: str | None = None
) -> dict[str, str]:
    """The tables a study reads, by :func:`run_study` ``tables`` key: ``clinical`` (the path
    given), ``radiomics``, ``reader_icc`` (when a used chain has an ``icc`` step),
    ``reader_icc_intra`` (when such a step has ``intra: true``: reader 1 against reader 1's
    repeat outline), ``habitats``, ``table_{block}`` for each used ``table`` block and
    ``backbone_{model}`` (the deep model's ``checkpoint.pt``) for each ``head.backbone``.

    Args:
        spec: The study.
        clinical: Path of the clinical table.
        radiomics_params: Name of the study's own radiomics parameter file
            (:func:`radiomics_table`) whose feature and ICC tables the study reads;
            None: the tables of the modalities' default files.
    """
    out = {"clinical": str(clinical)}
    for name in spec.used_blocks:
        b = spec.blocks[name]
        if b.source == "radiomics":
            out["radiomics"] = radiomics_table("features.parquet", radiomics_params)
        elif b.source == "habitats":
            out["habitats"] = paths.cohort_path("habitats", "features.parquet")
        elif b.source == "table":
            out[b.input_key] = str(b.path)
    for model in spec.backbones:  # networks trained end to end with a model's columns
        out[f"backbone_{model}"] = f"{study_dir(spec.name)}/deep/{model}/checkpoint.pt"
    if spec.uses_icc:
        out["reader_icc"] = radiomics_table("reader_icc.parquet", radiomics_params)
    if spec.uses_icc_intra:
        out["reader_icc_intra"] = radiomics_table("reader_icc_intra.parquet", radiomics_params)
    return out


def study_outputs(spec: StudySpec) -> dict[str, str]:
    """Every file :func:`run_study` writes (besides ``splits.parquet``), by output name, as file
    names inside the study folder. Fixed by the spec alone, whatever the data: a figure that
    cannot be drawn (e.g. a split with one class) is written as a placeholder saying why."""
    out = {
        name: f"{name}.parquet"
        for name in (
            "predictions",
            "performance",
            "comparisons",
            "calibration",
            "decision_curve",
            "by_center",
            "baseline",
        )
    }
    out["selected_features"] = "selected_features.json"
    out["metrics"] = "metrics.json"
    for split in spec.splits.names:
        out[f"roc_{split}"] = f"roc_{split}.png"
    out["calibration_png"] = "calibration.png"
    out["decision_curve_png"] = "decision_curve.png"
    if spec.agreement:
        out["agreement"] = "agreement.parquet"
    if spec.pathology:
        out["pathology"] = "pathology_correlation.parquet"
    if spec.clinical_models:
        out["clinical_univariable"] = "clinical_univariable.parquet"
        out["clinical_multivariable"] = "clinical_multivariable.parquet"
    if spec.nomogram:
        out["nomogram"] = "nomogram.png"
    if spec.explain:
        out["shap_beeswarm"] = "shap_beeswarm.png"
        out["shap_waterfall"] = "shap_waterfall.png"
        out["shap_force"] = "shap_force.png"
    if spec.survival is not None:
        out["cox"] = "cox.parquet"
        out["cutpoint"] = "cutpoint.json"
        for ep in spec.survival.endpoints:
            out[f"km_{ep}"] = f"km_{ep}.png"
    return out
