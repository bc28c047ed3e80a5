"""Rule carry_mask: check a mask against its image and carry it into the registered space."""

from hccrad import steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    steps.carry_mask(
        snakemake.input.mask,
        snakemake.input.image,
        snakemake.input.grid,
        snakemake.input.transform,
        snakemake.output.mask,
        kind=snakemake.wildcards.kind,
        patient=snakemake.wildcards.patient,
        phase=snakemake.wildcards.phase,
    )
