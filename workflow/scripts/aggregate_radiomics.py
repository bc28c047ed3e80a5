"""Rule aggregate_radiomics: the cohort feature table and its diagnostics sidecar."""

from hccrad import steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    steps.aggregate_radiomics(
        snakemake.input.json, snakemake.output.features, snakemake.output.diagnostics
    )
