"""Rule assign_habitats: subregion masks, statistics and overlay of one patient."""

from hccrad import patient, steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    steps.assign_habitats(
        snakemake.input.clusters,
        snakemake.input.centroids,
        snakemake.input.reference,
        snakemake.input.mask,
        snakemake.input.image,
        patient.stage_images(
            snakemake.input.registration,
            snakemake.input.normalization,
            snakemake.params.stage,
            snakemake.params.phases,
        ),
        snakemake.output.labels,
        snakemake.output.masks,
        snakemake.output.stats,
        snakemake.output.figure,
        patient=snakemake.wildcards.patient,
        spacing=snakemake.params.spacing,
    )
