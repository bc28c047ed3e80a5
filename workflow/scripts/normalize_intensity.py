"""Rule normalize_intensity: MR z-score/percentile within the liver, CT window."""

from hccrad import steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    steps.normalize_image(
        snakemake.input.image,
        snakemake.output.image,
        normalization=snakemake.params.normalization,
        liver_mask=snakemake.input.get("liver"),
        patient=snakemake.wildcards.patient,
        phase=snakemake.wildcards.phase,
    )
