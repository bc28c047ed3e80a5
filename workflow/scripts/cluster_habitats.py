"""Rule cluster_habitats: voxel feature maps of every habitat phase of one patient inside the
index lesion, then K-means on the tumor's voxel features for every k."""

from hccrad import patient, steps
from hccrad.config import settings_from_config
from hccrad.habitats import derive_seed
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    settings = settings_from_config(snakemake.config)
    habitats = settings.habitats
    name = snakemake.wildcards.patient
    out = snakemake.output
    phases = habitats.phases
    patient.compute_patient_voxel_maps(
        patient=name,
        registration=snakemake.input.registration,
        normalization=snakemake.input.normalization,
        stage=snakemake.params.stage,
        phases=phases,
        outputs={ph: (out[f"maps_{ph}"], out[f"image_{ph}"], out[f"mask_{ph}"]) for ph in phases},
        spacing=habitats.spacing,
        settings=habitats.voxelmap_settings(n_jobs=snakemake.threads),
        engine=habitats.engine,
    )
    steps.cluster_habitats(
        {ph: out[f"maps_{ph}"] for ph in phases},
        {ph: out[f"image_{ph}"] for ph in phases},
        out[f"mask_{phases[0]}"],
        out.clusters,
        out.metrics,
        out.centroids,
        features=habitats.features,
        settings=habitats.cluster_settings(derive_seed(settings.seed, "habitats", name)),
        patient=name,
    )
