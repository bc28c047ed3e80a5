"""Rule assign_habitats: subregion masks, statistics, overlay and per-subregion deep inputs of
one patient."""

from hccrad import patient, steps
from hccrad.config import DeepInputSpec, Normalization
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    params = snakemake.params
    specs = [DeepInputSpec.from_param(d) for d in params.deep_inputs.values()]
    deep_phases = sorted({ph for spec in specs for ph in spec.phases})
    registration, normalization = snakemake.input.registration, snakemake.input.normalization
    steps.assign_habitats(
        steps.HabitatAssignment(
            clusters=snakemake.input.clusters,
            centroids=snakemake.input.centroids,
            reference=snakemake.input.reference,
            mask=snakemake.input.mask,
            image=snakemake.input.image,
            phase_images=patient.stage_images(
                registration, normalization, params.stage, params.phases
            ),
            dst_labels=snakemake.output.labels,
            dst_masks=snakemake.output.masks,
            dst_stats=snakemake.output.stats,
            dst_png=snakemake.output.figure,
            patient=snakemake.wildcards.patient,
            spacing=params.spacing,
            dst_deep=snakemake.output.deep_inputs,
            deep_specs=specs,
            deep_images=patient.stage_images(
                registration, normalization, "normalize", deep_phases
            ),
            deep_scale=Normalization.from_param(params.normalization).unit_scale,
            center=snakemake.wildcards.center,
        )
    )
