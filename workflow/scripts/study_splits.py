"""Rule study_splits: one study's train/validation/external/temporal split of its patients."""

from hccrad import studies
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0]):
    studies.write_splits_job(
        snakemake.input.spec,
        snakemake.input.clinical,
        snakemake.output.splits,
        seed=snakemake.params.seed,
        patients=snakemake.params.patients,
        override=snakemake.params.override,
    )
