"""Rule extract_radiomics: PyRadiomics features of every phase and region of one patient (and of
the second reader's tumor where given)."""

from hccrad import patient
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    patient.extract_patient_radiomics(
        patient=snakemake.wildcards.patient,
        phases=snakemake.params.phases,
        reference=snakemake.params.reference,
        registration=snakemake.input.registration,
        normalization=snakemake.input.normalization,
        stage=snakemake.params.stage,
        regions=snakemake.params.regions,
        params=snakemake.input.params,
        dst_json=snakemake.output.json,
    )
