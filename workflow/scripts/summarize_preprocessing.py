"""Rule summarize_preprocessing: cohort preprocessing table and QC montage."""

from hccrad import steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    steps.cohort_summary(
        snakemake.input.json,
        snakemake.input.png,
        snakemake.output.table,
        snakemake.output.montage,
        per_row=snakemake.params.per_row,
    )
