"""Rule extract_radiomics: PyRadiomics features of one image for each region mask."""

from hccrad import steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    steps.extract_radiomics(
        snakemake.input.image,
        {region: snakemake.input[region] for region in snakemake.params.regions},
        snakemake.output.json,
        params=snakemake.input.params,
        patient=snakemake.wildcards.patient,
        phase=snakemake.wildcards.phase,
    )
