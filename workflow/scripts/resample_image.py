"""Rule resample_image: resample to the configured spacing (linear)."""

from hccrad import steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    steps.resample_image(
        snakemake.input.image,
        snakemake.output.image,
        spacing=snakemake.params.spacing,
        patient=snakemake.wildcards.patient,
        phase=snakemake.wildcards.phase,
    )
