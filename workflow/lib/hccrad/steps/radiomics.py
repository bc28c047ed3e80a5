"""Radiomics steps: whole-region features of one image, the cohort tables and the inter- and
intra-observer ICC."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from hccrad import fileio, imageio
from hccrad.fileio import PathLike
from hccrad.icc import feature_icc
from hccrad.preprocess import largest_component
from hccrad.radiomics import cohort_diagnostics_table, cohort_feature_table, extract_region_features

log = logging.getLogger(__name__)


def extract_radiomics(
    image: PathLike,
    regions: Mapping[str, PathLike],
    dst_json: PathLike,
    *,
    params: PathLike,
    patient: str,
    phase: str,
    index_lesion: bool = False,
) -> None:
    """Whole-region PyRadiomics features of one image for each region mask (e.g. tumor, ring).

    With ``index_lesion`` each mask is first reduced to its largest connected component (a
    second reader's raw tumor mask, say). Writes ``{"patient", "phase", "params", "regions":
    {name: {"features", "diagnostics"}}}``.
    """

    img = imageio.read_image(image, patient=patient, phase=phase)
    out: dict[str, Any] = {"patient": patient, "phase": phase, "params": str(params), "regions": {}}
    for name, mask_path in regions.items():
        mask = imageio.read_mask(mask_path, img, patient=patient, phase=phase, kind=name)
        if index_lesion:
            mask = largest_component(mask)
        features, diagnostics = extract_region_features(
            img, mask, params, patient=patient, phase=phase, mask_file=mask_path
        )
        out["regions"][name] = {"features": features, "diagnostics": diagnostics}
        log.info("%s %s %s: %d features", patient, phase, name, len(features))
    fileio.write_json(out, dst_json)


def _region_records(jsons: Sequence[PathLike], reader: str = "reader1") -> list[dict[str, Any]]:
    """Per patient x phase x region records (see hccrad.radiomics) from extraction JSONs.

    Each JSON is one image's extraction (:func:`extract_radiomics`) or one patient's
    (:func:`hccrad.patient.extract_patient_radiomics`: its ``reader`` list of those).
    """
    images = []
    for path in jsons:
        with open(path) as fh:
            rec = json.load(fh)
        images += rec.get(reader, [rec])
    records = []
    for rec in images:
        for region, values in rec["regions"].items():
            records.append(
                {
                    "patient": rec["patient"],
                    "phase": rec["phase"],
                    "region": region,
                    "features": values["features"],
                    "diagnostics": values["diagnostics"],
                }
            )
    return records


def aggregate_radiomics(
    jsons: Sequence[PathLike], dst_features: PathLike, dst_diagnostics: PathLike
) -> None:
    """Cohort radiomics table (one row per patient, ``{phase}_{region}_{feature}`` columns)."""

    records = _region_records(jsons)
    fileio.write_parquet(cohort_feature_table(records), dst_features, index=True)
    fileio.write_parquet(cohort_diagnostics_table(records), dst_diagnostics, index=True)


def reader_icc(jsons: Sequence[PathLike], dst: PathLike, *, second: str = "reader2") -> None:
    """Per-feature ICC(2,1) and ICC(3,1) of the tumor features, per phase, of reader 1 against a
    second outline of the same tumor.

    Reader 1's index lesion versus the second outline's (its largest component), same image, same
    parameters, from per-patient radiomics JSONs
    (:func:`hccrad.patient.extract_patient_radiomics`); one row per ``{phase}_tumor_{feature}``
    with ``icc2_1``, ``icc3_1`` and ``n`` (patients with both outlines on that phase).

    Args:
        second: ``reader2`` (inter-observer ICC: the second reader's outline) or
            ``reader1_repeat`` (intra-observer ICC: reader 1's repeat outline).
    """

    def tumor_table(reader: str) -> Any:
        records = [r for r in _region_records(jsons, reader) if r["region"] == "tumor"]
        return cohort_feature_table(records)

    other = tumor_table(second)
    reader1 = tumor_table("reader1").reindex(index=other.index, columns=other.columns)
    fileio.write_parquet(feature_icc(reader1, other), dst, index=True)
