"""Rule segment_patient: predicted liver and tumor masks on one patient's registered reference
image."""

from hccrad import patient, steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    phase = snakemake.wildcards.phase
    steps.segment_patient(
        snakemake.input.checkpoint,
        patient.segmentation_case(snakemake.input.registration, phase)["image"],
        snakemake.output.liver,
        snakemake.output.tumor,
        patient=snakemake.wildcards.patient,
        phase=phase,
    )
