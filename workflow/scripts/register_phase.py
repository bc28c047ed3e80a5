"""Rule register_phase: rigid registration of one phase onto the reference phase."""

from hccrad import steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    steps.register_phase(
        snakemake.input.fixed,
        snakemake.input.moving,
        snakemake.output.image,
        snakemake.output.transform,
        snakemake.output.info,
        is_reference=snakemake.params.is_reference,
        method=snakemake.params.method,
        refine=snakemake.params.refine,
        seed=snakemake.params.seed,
        patient=snakemake.wildcards.patient,
        phase=snakemake.wildcards.phase,
    )
