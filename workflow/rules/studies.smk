# Study layer: every study file of the config key `studies` (default: the five seed studies in
# config/studies/, each a delta over config/studies/defaults.yaml) gets a folder
# results/cohort/studies/{study}/ of tables and figures. The split comes first, from the clinical
# table alone (study_splits), so that later rules (e.g. deep-learning training) can use the same
# training patients; run_study_{study} then fits, evaluates and writes everything else.
# All logic lives in hccrad.studies (docs/studies.md).


rule study_splits:
    input:
        unpack(get_study_splits_inputs),
    output:
        splits=study_path("{study}", "splits.parquet"),
    log:
        paths.log_path("study_splits", "{study}"),
    benchmark:
        paths.benchmark_path("study_splits", "{study}")
    wildcard_constraints:
        study="|".join(STUDIES) or "none",
    priority: CHAIN_PRIORITY
    conda:
        STATS_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        seed=SETTINGS.seed,
        patients=lambda wildcards: PLAN.study_patients(wildcards.study),
        # the configuration overlay's delta for this study (config/demo.yaml): its values
        # replace the study file's, so changing them reruns the study
        override=lambda wildcards: PLAN.study_override(wildcards.study),
    script:
        "../scripts/study_splits.py"


# One rule per study: the outputs depend on the study (its survival endpoints, clinical model,
# explained model...), so they cannot share one {study} pattern.
for _study in STUDIES:

    rule:
        name:
            f"run_study_{_study}"
        input:
            unpack(get_run_study_inputs(_study)),
        output:
            **study_report_outputs(_study),
        log:
            paths.log_path("run_study", _study),
        benchmark:
            paths.benchmark_path("run_study", _study)
        priority: CHAIN_PRIORITY
        conda:
            STATS_ENV
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            seed=SETTINGS.seed,
            patients=PLAN.study_patients(_study),
            override=PLAN.study_override(_study),
            backbones=study_backbone_inputs(_study),
            out_dir=lambda wildcards, output: os.path.dirname(output.metrics),
        script:
            "../scripts/run_study.py"
