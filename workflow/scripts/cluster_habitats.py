"""Rule cluster_habitats: voxel feature maps of every habitat phase of one patient inside the
index lesion, then K-means on the tumor's voxel features for every k."""

from hccrad import patient, steps
from hccrad.habitats import HabitatSettings, derive_seed
from hccrad.runlog import job_logging
from hccrad.voxelmaps import VoxelMapSettings

with job_logging(snakemake.log[0], threads=snakemake.threads):
    params = snakemake.params
    name = snakemake.wildcards.patient
    out = snakemake.output
    phases = params.phases
    bin_width, bin_count = params.bins
    patient.compute_patient_voxel_maps(
        patient=name,
        registration=snakemake.input.registration,
        normalization=snakemake.input.normalization,
        stage=params.stage,
        phases=phases,
        outputs={ph: (out[f"maps_{ph}"], out[f"image_{ph}"], out[f"mask_{ph}"]) for ph in phases},
        spacing=params.spacing,
        settings=VoxelMapSettings(
            kernel_radius=params.kernel_radius,
            bin_width=bin_width,
            bin_count=bin_count,
            classes=tuple(params.classes),
            n_jobs=snakemake.threads,  # the rule's threads, not every CPU of the node
        ),
        engine=params.engine,
    )
    steps.cluster_habitats(
        {ph: out[f"maps_{ph}"] for ph in phases},
        {ph: out[f"image_{ph}"] for ph in phases},
        out[f"mask_{phases[0]}"],
        out.clusters,
        out.metrics,
        out.centroids,
        features=params.features,
        settings=HabitatSettings(
            k_range=tuple(params.k_range),
            k=params.k,
            seed=derive_seed(params.seed, "habitats", name),
            n_init=params.n_init,
            silhouette_sample=params.silhouette_sample,
        ),
        patient=name,
    )
