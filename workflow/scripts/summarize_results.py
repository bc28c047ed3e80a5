"""Rule summarize_results: results/summary.md and the report's HTML tables."""

from hccrad import report
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0]):
    report.summarize_results_job(
        dict(snakemake.input.items()),
        dict(snakemake.output.items()),
        studies=snakemake.params.studies,
        skipped=snakemake.params.skipped,
        overlay=snakemake.params.overlay,
    )
