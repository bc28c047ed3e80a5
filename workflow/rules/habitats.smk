# Voxel feature maps (per patient x habitat phase) and habitat clustering: per-patient K-means
# for every k, the cohort's k and reference habitats, then consistent subregions per patient.


rule compute_voxel_maps:
    input:
        unpack(get_voxelmap_inputs),
    output:
        maps=directory(paths.image_path("voxelmaps", "maps")),
        image=paths.image_path("voxelmaps", "image.nii.gz"),
        mask=paths.image_path("voxelmaps", "mask.nii.gz"),
    log:
        paths.log_path("compute_voxel_maps", "{center}", "{patient}", "{phase}"),
    benchmark:
        paths.benchmark_path("compute_voxel_maps", "{center}", "{patient}", "{phase}")
    conda:
        RADIOMICS_ENV
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        # listed so that changing them reruns the maps
        spacing=HABITATS.spacing,
        kernel_radius=HABITATS.kernel_radius,
        bins=(HABITATS.bin_width, HABITATS.bin_count),
        classes=list(HABITATS.classes),
        engine=HABITATS.engine,
    script:
        "../scripts/compute_voxel_maps.py"


rule cluster_habitats:
    input:
        unpack(get_cluster_habitats_inputs),
    output:
        clusters=paths.patient_path("habitats", "clusters.parquet"),
        metrics=paths.patient_path("habitats", "k_metrics.tsv"),
        centroids=paths.patient_path("habitats", "centroids.parquet"),
    log:
        paths.log_path("cluster_habitats", "{center}", "{patient}"),
    benchmark:
        paths.benchmark_path("cluster_habitats", "{center}", "{patient}")
    conda:
        RADIOMICS_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        # listed so that changing them reruns the clustering
        features=HABITATS.features,
        k_range=list(HABITATS.k_range),
        seed=SETTINGS.seed,
    script:
        "../scripts/cluster_habitats.py"


rule select_habitat_k:
    input:
        metrics=habitat_targets("habitats", "k_metrics.tsv"),
        centroids=habitat_targets("habitats", "centroids.parquet"),
    output:
        summary=paths.cohort_path("habitats", "k_selection.tsv"),
        reference=paths.cohort_path("habitats", "reference_habitats.parquet"),
        figure=report(
            paths.cohort_path("habitats", "k_selection.png"),
            caption=caption("habitat_k_selection"),
            category="Habitats",
            subcategory="Number of habitats",
        ),
    log:
        paths.log_path("select_habitat_k"),
    benchmark:
        paths.benchmark_path("select_habitat_k")
    conda:
        RADIOMICS_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        # listed so that changing them reruns the choice
        k=HABITATS.k,
        order_by=HABITATS.order_by,
        seed=SETTINGS.seed,
    script:
        "../scripts/select_habitat_k.py"


rule assign_habitats:
    input:
        unpack(get_assign_habitats_inputs),
        clusters=paths.patient_path("habitats", "clusters.parquet"),
        centroids=paths.patient_path("habitats", "centroids.parquet"),
        reference=habitat_reference(),
    output:
        labels=paths.patient_path("habitats", "subregions.nii.gz"),
        masks=directory(paths.patient_path("habitats", "masks")),
        stats=paths.patient_path("habitats", "stats.json"),
        figure=report(
            paths.patient_path("habitats", "overlay.png"),
            caption=caption("habitat_overlay"),
            category="Habitats",
            subcategory="Subregions per patient",
            labels={"center": "{center}", "patient": "{patient}"},
        ),
    log:
        paths.log_path("assign_habitats", "{center}", "{patient}"),
    benchmark:
        paths.benchmark_path("assign_habitats", "{center}", "{patient}")
    conda:
        RADIOMICS_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        spacing=HABITATS.spacing,
    script:
        "../scripts/assign_habitats.py"


rule aggregate_habitats:
    input:
        stats=habitat_targets("habitats", "stats.json"),
    output:
        features=paths.cohort_path("habitats", "features.parquet"),
    log:
        paths.log_path("aggregate_habitats"),
    benchmark:
        paths.benchmark_path("aggregate_habitats")
    conda:
        RADIOMICS_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/aggregate_habitats.py"
