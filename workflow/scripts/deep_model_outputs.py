"""Rule deep_model_outputs: deep features, predictions, MIL features and Grad-CAM overlays."""

from pathlib import Path

from hccrad import patient, steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    spec = snakemake.params.spec
    inputs = patient.deep_input_files(snakemake.params.manifests, snakemake.params.input_key)
    mil = bool(spec.get("mil", False))
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
    )
    if not mil:  # declared output: an empty table says "no MIL features for this model"
        import pandas as pd

        pd.DataFrame(index=pd.Index([], name="patient")).to_parquet(snakemake.output.mil)
    steps.deep_gradcam(
        snakemake.input.checkpoint,
        inputs,
        Path(snakemake.output.gradcam),
        max_patients=spec.get("gradcam", 4),
    )
