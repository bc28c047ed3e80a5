"""Rule evaluate_segmentation: the U-Net segments the held-out patients; Dice against their
given masks."""

from hccrad import patient, steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    cases = {}
    for p, ref in snakemake.params.references.items():
        case = patient.segmentation_case(
            snakemake.input[f"register_{p}"], ref, snakemake.params.phases[p]
        )
        cases[p] = {
            "image": case["image"],
            "phase": ref,
            "liver": case["liver"],
            "tumor": case["tumor"],
        }
    steps.evaluate_segmentation(
        cases,
        snakemake.output.dice,
        checkpoint=snakemake.input.checkpoint,
        dst_predictions=snakemake.output.predictions,
    )
