"""Rule select_habitat_k: the cohort's k and the reference habitats (consistent labels)."""

from hccrad import steps
from hccrad.habitats import derive_seed
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    splits = snakemake.input.splits
    splits = [splits] if isinstance(splits, str) else list(splits)
    steps.select_habitat_k(
        snakemake.input.metrics,
        snakemake.input.centroids,
        snakemake.output.summary,
        snakemake.output.reference,
        snakemake.output.figure,
        fixed_k=snakemake.params.k,
        seed=derive_seed(snakemake.params.seed, "habitats", "reference"),
        order_by=snakemake.params.order_by,
        splits=dict(zip(snakemake.params.training_studies, splits, strict=True)),
    )
