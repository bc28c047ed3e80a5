"""Rule run_study_{study}: fit every model of one study, evaluate it, write tables and figures."""

from hccrad import studies
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0]):
    tables = {
        key: path
        for key, path in snakemake.input.items()
        if key not in ("spec", "defaults", "splits")
    }
    studies.run_study_job(
        snakemake.input.spec,
        tables,
        snakemake.input.splits,
        snakemake.params.out_dir,
        seed=snakemake.params.seed,
        patients=snakemake.params.patients,
        override=snakemake.params.override,
        threads=snakemake.threads,
    )
