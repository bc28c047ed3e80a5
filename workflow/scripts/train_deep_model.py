"""Rule train_deep_model: one deep model of a study (or one per habitat subregion, or one per
listed phase), on the study's training split only."""

from hccrad import patient, steps
from hccrad.runlog import job_logging

with job_logging(snakemake.log[0], threads=snakemake.threads):
    spec = snakemake.params.spec
    manifests = {
        k.removeprefix("npz_"): v for k, v in snakemake.input.items() if k.startswith("npz_")
    }
    if snakemake.params.per_subregion:
        inputs = patient.subregion_input_files(manifests, snakemake.params.input_key)
        train = steps.train_subregion_models
    elif snakemake.params.phase_keys:
        inputs = patient.phase_input_files(manifests, snakemake.params.phase_keys)
        train = steps.train_phase_models
    else:
        inputs = patient.deep_input_files(manifests, snakemake.params.input_key)
        train = steps.train_deep_model
    train(
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
