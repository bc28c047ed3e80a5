"""Rule preprocess_patient: register_patient then normalize_patient in one job, for a patient
whose masks are all given."""

from hccrad import patient
from hccrad.config import settings_from_config
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    settings = settings_from_config(snakemake.config)
    images, masks = patient.split_raw_inputs(dict(snakemake.input.items()))
    where = dict(center=snakemake.wildcards.center, patient=snakemake.wildcards.patient)
    patient.preprocess_patient(
        register=dict(
            **where,
            images={ph: images[ph] for ph in snakemake.params.phases},
            masks=masks,
            reference=snakemake.params.reference,
            settings=settings,
            n4=snakemake.params.n4,
            manifest=snakemake.output.registration,
        ),
        normalize=dict(
            **where,
            modality=snakemake.params.modality,
            phases=snakemake.params.phases,
            registration=snakemake.output.registration,
            predicted={},
            settings=settings,
            deep_inputs=[settings.deep_inputs[n] for n in snakemake.params.deep_inputs],
            manifest=snakemake.output.normalization,
            dst_qc_png=snakemake.output.png,
            dst_qc_json=snakemake.output.json,
        ),
    )
