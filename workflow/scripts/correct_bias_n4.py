"""Rule correct_bias_n4: N4 bias-field correction (MR)."""

from hccrad import steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    steps.correct_bias(
        snakemake.input.image,
        snakemake.output.image,
        snakemake.output.bias,
        shrink_factor=snakemake.params.shrink_factor,
        iterations=snakemake.params.iterations,
        convergence_threshold=snakemake.params.convergence_threshold,
        spline_distance_mm=snakemake.params.spline_distance_mm,
        liver_mask=snakemake.input.get("liver"),
        mask_image=snakemake.input.get("raw"),
        patient=snakemake.wildcards.patient,
        phase=snakemake.wildcards.phase,
    )
