"""Rule train_segmentation: the liver + tumor U-Net on the patients with given masks."""

from hccrad import patient, steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    references = snakemake.params.references
    cases = {
        p: patient.segmentation_case(
            snakemake.input[f"register_{p}"], ref, snakemake.params.phases[p]
        )
        for p, ref in references.items()
    }
    steps.train_segmentation(
        cases,
        snakemake.output.checkpoint.rsplit("/", 1)[0],
        overrides=snakemake.params.train,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    )
