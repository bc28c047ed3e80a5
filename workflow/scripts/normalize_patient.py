"""Rule normalize_patient: every phase of one patient normalised, its index lesion and ring, the
deep-learning input tensors and the patient's QC figure and JSON."""

from hccrad import patient
from hccrad.config import DeepInputSpec, PreprocessSettings
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    params = dict(snakemake.params.items())
    given = snakemake.input.keys()
    patient.normalize_patient(
        center=snakemake.wildcards.center,
        patient=snakemake.wildcards.patient,
        modality=params["modality"],
        phases=params["phases"],
        registration=snakemake.input.registration,
        predicted={k: snakemake.input[k] for k in ("liver", "tumor") if k in given},
        settings=PreprocessSettings.from_params(params),
        deep_inputs=[DeepInputSpec.from_param(d) for d in params["deep_inputs"].values()],
        manifest=snakemake.output.manifest,
        dst_qc_png=snakemake.output.png,
        dst_qc_json=snakemake.output.json,
    )
