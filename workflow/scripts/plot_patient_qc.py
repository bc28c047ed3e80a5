"""Rule plot_patient_qc: QC figure and QC JSON of one patient (inputs are named {what}_{phase})."""

from hccrad import steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    steps.patient_qc(
        center=snakemake.wildcards.center,
        patient=snakemake.wildcards.patient,
        modality=snakemake.params.modality,
        inputs=dict(snakemake.input.items()),
        dst_png=snakemake.output.png,
        dst_json=snakemake.output.json,
    )
