"""Rule convert_image: DICOM series / NRRD / NIfTI -> NIfTI."""

from hccrad import steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    steps.convert_image(
        snakemake.input.image,
        snakemake.output.image,
        patient=snakemake.wildcards.patient,
        phase=snakemake.wildcards.phase,
    )
