# Habitats: per patient (one job) the voxel feature maps of every habitat phase and K-means for
# every k; the cohort's k and reference habitats; then consistent subregions per patient.


rule cluster_habitats:
    input:
        unpack(get_patient_images),
    output:
        **voxelmap_outputs(),
        clusters=paths.patient_path("habitats", "clusters.parquet"),
        metrics=paths.patient_path("habitats", "k_metrics.tsv"),
        centroids=paths.patient_path("habitats", "centroids.parquet"),
    log:
        paths.log_path("cluster_habitats", "{center}", "{patient}"),
    benchmark:
        paths.benchmark_path("cluster_habitats", "{center}", "{patient}")
    conda:
        RADIOMICS_ENV
    # one thread: the K-means (most of the job) is single-threaded; two patients side by side
    # use two cores better than one patient's voxel maps on two
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        # listed so that changing them reruns the maps and the clustering
        stage=lambda w: SETTINGS.radiomics_stage[COHORT.modality(w.patient)],
        phases=list(HABITATS.phases),
        spacing=HABITATS.spacing,
        kernel_radius=HABITATS.kernel_radius,
        bins=(HABITATS.bin_width, HABITATS.bin_count),
        classes=list(HABITATS.classes),
        engine=HABITATS.engine,
        features=HABITATS.features,
        k_range=list(HABITATS.k_range),
        k=HABITATS.k,
        n_init=HABITATS.n_init,
        silhouette_sample=HABITATS.silhouette_sample,
        seed=SETTINGS.seed,
    script:
        "../scripts/cluster_habitats.py"


rule select_habitat_k:
    input:
        metrics=habitat_targets("habitats", "k_metrics.tsv"),
        centroids=habitat_targets("habitats", "centroids.parquet"),
        # fitted on the training patients of the studies that read the subregions
        splits=habitat_training_splits(),
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
        training_studies=PLAN.habitat_studies,
    script:
        "../scripts/select_habitat_k.py"


rule assign_habitats:
    input:
        unpack(get_assign_habitats_inputs),
        unpack(get_patient_images),
        clusters=paths.patient_path("habitats", "clusters.parquet"),
        centroids=paths.patient_path("habitats", "centroids.parquet"),
        reference=habitat_reference(),
    output:
        labels=paths.patient_path("habitats", "subregions.nii.gz"),
        masks=directory(paths.patient_path("habitats", "masks")),
        stats=paths.patient_path("habitats", "stats.json"),
        # per-subregion deep-input tensors (deep.inputs with region: habitats; may list none)
        deep_inputs=paths.patient_path("habitats", "deep_inputs.json"),
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
        stage=lambda w: SETTINGS.radiomics_stage[COHORT.modality(w.patient)],
        phases=lambda w: COHORT.phases(w.patient),
        # the per-subregion input tensors this patient gets: {name: definition}
        deep_inputs=lambda w: {
            s.name: s.as_param() for s in PLAN.habitat_deep_inputs(w.patient)
        },
        normalization=lambda w: modality_of(w).normalization.as_param(),
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
