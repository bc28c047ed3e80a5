# hccrad: multi-center HCC radiomics and deep-learning workflow.
# This file is an index: configuration, one include per stage in pipeline order, and `rule all`.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/qc.smk"
include: "workflow/rules/radiomics.smk"
include: "workflow/rules/habitats.smk"
include: "workflow/rules/deep.smk"
include: "workflow/rules/segmentation.smk"
include: "workflow/rules/studies.smk"
include: "workflow/rules/audit.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_targets(),
        study_targets(),
        deep_model_targets(),
        audit_targets(),
        report_targets(),


# after every rule: Snakemake then reads their functions' signatures instead of computing them,
# evaluates constant resource expressions (a profile's default-resources) once, and parses and
# reads each rule script once, instead of once per job (hccrad.snakemake_speedups)
cache_function_signatures(workflow.rules)
freeze_constant_resources(workflow.rules)
memoize_source_uri_parsing()
memoize_script_sources()


# when the run ends: the scheduler's re-planning timers (--max-jobs-per-timespan) would otherwise
# hold the process for up to a timespan after the last job (hccrad.snakemake_speedups)
onsuccess:
    stop_reevaluation_timers()


onerror:
    stop_reevaluation_timers()
