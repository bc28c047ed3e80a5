"""Rule normalize_patient: every phase of one patient normalised, its index lesion and ring, the
deep-learning input tensors and the patient's QC figure and JSON."""

from hccrad import patient
from hccrad.config import settings_from_config
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    settings = settings_from_config(snakemake.config)
    name = snakemake.wildcards.patient
    given = snakemake.input.keys()
    patient.normalize_patient(
        center=snakemake.wildcards.center,
        patient=name,
        modality=snakemake.params.modality,
        phases=snakemake.params.phases,
        registration=snakemake.input.registration,
        predicted={k: snakemake.input[k] for k in ("liver", "tumor") if k in given},
        settings=settings,
        deep_inputs=[settings.deep_inputs[n] for n in snakemake.params.deep_inputs],
        manifest=snakemake.output.manifest,
        dst_qc_png=snakemake.output.png,
        dst_qc_json=snakemake.output.json,
    )
