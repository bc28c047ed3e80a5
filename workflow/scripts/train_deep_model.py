"""Rule train_deep_model: one deep model of a study, on the study's training split only."""

from hccrad import patient, steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    spec = snakemake.params.spec
    inputs = patient.deep_input_files(
        {k.removeprefix("npz_"): v for k, v in snakemake.input.items() if k.startswith("npz_")},
        snakemake.params.input_key,
    )
    steps.train_deep_model(
        inputs,
        snakemake.input.splits,
        snakemake.input.clinical,
        snakemake.output.checkpoint.rsplit("/", 1)[0],
        label=snakemake.params.label,
        preset=spec["preset"],
        overrides=spec.get("train", {}),
        seed=snakemake.params.seed,
        threads=snakemake.threads,
        mark_untrained=True,
    )
