"""Rule extract_reader2_radiomics: tumor features from the second reader's index lesion."""

from hccrad import steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    steps.extract_radiomics(
        snakemake.input.image,
        {"tumor": snakemake.input.reader2},
        snakemake.output.json,
        params=snakemake.input.params,
        patient=snakemake.wildcards.patient,
        phase=snakemake.wildcards.phase,
        index_lesion=True,
    )
