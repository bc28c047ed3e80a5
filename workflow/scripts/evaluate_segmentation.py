"""Rule evaluate_segmentation: Dice of the U-Net on the held-out patients."""

from hccrad import patient, steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    cases = {}
    for p, ref in snakemake.params.references.items():
        case = patient.segmentation_case(snakemake.input[f"register_{p}"], ref)
        cases[p] = {
            "liver": case["liver"],
            "tumor": case["tumor"],
            "pred_liver": snakemake.input[f"predliver_{p}"],
            "pred_tumor": snakemake.input[f"predtumor_{p}"],
        }
    steps.evaluate_segmentation(cases, snakemake.output.dice)
