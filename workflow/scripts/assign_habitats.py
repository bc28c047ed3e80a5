"""Rule assign_habitats: subregion masks, statistics, overlay and per-subregion deep inputs of
one patient."""

from hccrad import patient, steps
from hccrad.config import settings_from_config
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    specs = [settings_from_config(snakemake.config).deep_inputs[n]
             for n in snakemake.params.deep_inputs]  # fmt: skip
    deep_phases = sorted({ph for spec in specs for ph in spec.phases})
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
        dst_deep=snakemake.output.deep_inputs,
        deep_specs=specs,
        deep_images=patient.stage_images(
            snakemake.input.registration,
            snakemake.input.normalization,
            "normalize",
            deep_phases,
        ),
        deep_scale=snakemake.params.normalization.unit_scale,
        center=snakemake.wildcards.center,
    )
