"""Rules compute_reader_icc and compute_reader_icc_intra: per-feature ICC table of reader 1
against a second outline (params.second: reader 2's, or reader 1's repeat)."""

from hccrad import steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    steps.reader_icc(snakemake.input.json, snakemake.output.icc, second=snakemake.params.second)
