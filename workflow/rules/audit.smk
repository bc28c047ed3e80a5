# Reproducibility and privacy audit of the run, once every result exists: provenance manifest,
# per-center feature drift, reader-ICC summary, planted-signal recovery (synthetic cohorts),
# TRIPOD+AI / CLAIM / METRICS evidence, and a search of every output and log for the DICOM
# identifiers of the inputs. All logic lives in hccrad.audit (docs/audit.md); two runs are
# compared with `hccrad audit compare RUN_A RUN_B`.


rule audit:
    input:
        unpack(get_audit_inputs),
    output:
        manifest=audit_output("manifest"),
        manifest_table=audit_output("manifest_table"),
        drift=audit_output("drift"),
        drift_summary=audit_report("drift_summary", "Center drift", "share drifting"),
        drift_figure=audit_report("drift_figure", "Center drift", "|SMD| histogram"),
        icc_summary=audit_report("icc_summary", "Reader reproducibility", "ICC summary"),
        planted_signal=audit_report("planted_signal", "Planted signal", "recovery"),
        privacy=audit_report("privacy", "Privacy", "identifier search"),
        checklist=audit_report("checklist", "Reporting checklists", "evidence"),
        summary=audit_output("summary"),
    log:
        paths.log_path("audit"),
    benchmark:
        paths.benchmark_path("audit")
    conda:
        PREPROCESS_ENV
    # the privacy scan in two processes: the audit is the last job and runs alone
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        # the run's configuration, recorded in the manifest (a change reruns the audit)
        config=dict(config),
        study_dirs=audit_study_dirs(),
        project_dir=workflow.basedir,
    script:
        "../scripts/audit.py"
