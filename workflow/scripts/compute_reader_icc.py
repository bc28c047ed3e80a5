"""Rule compute_reader_icc: per-feature inter-reader ICC table."""

from hccrad import steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    steps.reader_icc(snakemake.input.json, snakemake.output.icc)
