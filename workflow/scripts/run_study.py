"""Rule run_study_{study}: fit every model of one study, evaluate it, write tables and figures."""

from hccrad import patient, studies
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0]):
    tables = {
        key: path
        for key, path in snakemake.input.items()
        if key not in ("spec", "defaults", "splits")
    }
    backbone_inputs = {
        model: patient.deep_input_files(spec["manifests"], spec["input_key"])
        for model, spec in snakemake.params.backbones.items()
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
        backbone_inputs=backbone_inputs,
    )
