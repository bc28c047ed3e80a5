"""Rule preprocess_patient: register_patient then normalize_patient in one job, for a patient
whose masks are all given."""

from hccrad import patient
from hccrad.config import DeepInputSpec, PreprocessSettings
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    params = dict(snakemake.params.items())
    settings = PreprocessSettings.from_params(params)
    images, masks = patient.split_raw_inputs(dict(snakemake.input.items()))
    where = dict(center=snakemake.wildcards.center, patient=snakemake.wildcards.patient)
    patient.preprocess_patient(
        register=dict(
            **where,
            images={ph: images[ph] for ph in params["phases"]},
            masks=masks,
            reference=params["reference"],
            settings=settings,
            n4=params["n4"],
            manifest=snakemake.output.registration,
            series=params["selections"]["series"],
            segments=params["selections"]["segments"],
            round_intensities=params["round_intensities"],
        ),
        normalize=dict(
            **where,
            modality=params["modality"],
            phases=params["phases"],
            registration=snakemake.output.registration,
            predicted={},
            settings=settings,
            deep_inputs=[DeepInputSpec.from_param(d) for d in params["deep_inputs"].values()],
            manifest=snakemake.output.normalization,
            dst_qc_png=snakemake.output.png,
            dst_qc_json=snakemake.output.json,
        ),
    )
