"""Rule audit: manifest, center drift, reader ICC, planted signal, privacy scan, checklists."""

import os

from hccrad.audit import run_audit_job
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    run_audit_job(
        out_dir=os.path.dirname(snakemake.output.summary),
        config=snakemake.params.config,
        cohort=snakemake.input.cohort,
        clinical=snakemake.input.clinical,
        features=snakemake.input.features,
        reader_icc=snakemake.input.get("reader_icc"),
        reader_icc_intra=snakemake.input.get("reader_icc_intra"),
        study_dirs=snakemake.params.study_dirs,
        truth=snakemake.input.get("truth"),
        project_dir=snakemake.params.project_dir,
        workers=snakemake.threads,
    )
