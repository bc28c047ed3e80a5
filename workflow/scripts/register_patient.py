"""Rule register_patient: every phase of one patient converted, resampled, N4-corrected (MR),
registered onto the reference phase, with the sheet's masks carried into that space (patients
whose masks the U-Net predicts; the others go through preprocess_patient)."""

from hccrad import patient
from hccrad.config import PreprocessSettings
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    params = dict(snakemake.params.items())
    images, masks = patient.split_raw_inputs(dict(snakemake.input.items()))
    patient.register_patient(
        center=snakemake.wildcards.center,
        patient=snakemake.wildcards.patient,
        images={ph: images[ph] for ph in params["phases"]},
        masks=masks,
        reference=params["reference"],
        settings=PreprocessSettings.from_params(params),
        n4=params["n4"],
        manifest=snakemake.output.manifest,
        series=params["selections"]["series"],
        segments=params["selections"]["segments"],
        round_intensities=params["round_intensities"],
    )
