"""Rule deep_model_outputs: deep features, predictions, MIL features, the network's own metrics
per split and Grad-CAM / Score-CAM overlays."""

from functools import partial
from pathlib import Path

import pandas as pd

from hccrad import patient, steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    spec = snakemake.params.spec
    mil = bool(spec.get("mil", False))
    if snakemake.params.per_subregion or snakemake.params.phase_keys:
        if snakemake.params.per_subregion:
            by = "subregion"
            inputs = patient.subregion_input_files(
                snakemake.params.manifests, snakemake.params.input_key
            )
        else:
            by = "phase"
            inputs = patient.phase_input_files(
                snakemake.params.manifests, snakemake.params.phase_keys
            )
        steps.bundle_outputs(
            snakemake.input.checkpoint,
            inputs,
            snakemake.output.features,
            snakemake.output.predictions,
            by=by,
            threads=snakemake.threads,
            dst_metrics=snakemake.output.split_metrics,
            splits=snakemake.input.splits,
            clinical=snakemake.input.clinical,
            label=snakemake.params.label,
        )
        gradcam = partial(steps.bundle_gradcam, by=by)
    else:
        inputs = patient.deep_input_files(snakemake.params.manifests, snakemake.params.input_key)
        steps.deep_model_outputs(
            snakemake.input.checkpoint,
            inputs,
            snakemake.input.splits,
            snakemake.output.features,
            snakemake.output.predictions,
            snakemake.output.mil if mil else None,
            mil_bins=spec.get("mil_bins", 10),
            mil_words=spec.get("mil_words", 10),
            threads=snakemake.threads,
            dst_metrics=snakemake.output.split_metrics,
            clinical=snakemake.input.clinical,
            label=snakemake.params.label,
        )
        gradcam = steps.deep_gradcam
    if not mil:  # declared output: an empty table says "no MIL features for this model"
        pd.DataFrame(index=pd.Index([], name="patient")).to_parquet(snakemake.output.mil)
    gradcam(
        snakemake.input.checkpoint,
        inputs,
        Path(snakemake.output.gradcam),
        max_patients=spec.get("gradcam", 4),
        method=spec.get("cam", "gradcam"),
    )
