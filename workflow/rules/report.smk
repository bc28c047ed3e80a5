# The run's summary (results/summary.md) and the HTML tables of the Snakemake report; the report
# itself is built afterwards by `snakemake --report results/report.html` from the outputs that
# the rules flag with report() (captions in workflow/report/). Reporting only reads results.
# All logic lives in hccrad.report (docs/report.md).


rule summarize_results:
    input:
        unpack(get_summarize_results_inputs),
    output:
        **summarize_results_outputs(),
    log:
        paths.log_path("summarize_results"),
    benchmark:
        paths.benchmark_path("summarize_results")
    conda:
        STATS_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        **summarize_results_params(),
    script:
        "../scripts/summarize_results.py"
