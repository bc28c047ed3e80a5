"""Rule make_tumor_regions: index lesion and peritumoral ring clipped to the liver."""

from hccrad import steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    steps.make_tumor_regions(
        snakemake.input.tumor,
        snakemake.input.get("liver"),
        snakemake.output.index_tumor,
        snakemake.output.ring,
        distance_mm=snakemake.params.distance_mm,
        patient=snakemake.wildcards.patient,
        phase=snakemake.wildcards.phase,
    )
