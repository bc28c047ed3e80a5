"""Per-patient pipeline steps: every phase of one patient in one job.

A DAG job costs a process start-up (imports: antspyx ~1.5 s, PyRadiomics ~1 s) and, on a cluster,
a scheduler round trip; the DAG itself costs Snakemake ~2-3 ms per job to plan. One job per
patient per stage, instead of one per image per step, keeps a 2,000-patient cohort's DAG small
and its runs quick. Each step here composes the per-image steps of :mod:`hccrad.steps` (tested on
their own) and lists what it wrote in a manifest (:mod:`hccrad.manifest`):

* :func:`register_patient` — per phase: conversion, resampling, N4 (MR), rigid registration onto
  the reference phase, the sheet's masks carried into the registered space.
* :func:`normalize_patient` — per phase: intensity normalisation, index lesion and peritumoral
  ring; the deep-learning input tensors; the patient's QC figure and QC JSON.
* :func:`extract_patient_radiomics` — whole-region PyRadiomics features of every phase (and the
  second reader's tumor where given).

Manifest keys are ``{phase}/{stage}/{name}`` with the file at
``results/{center}/{patient}/{phase}/{stage}/{name}.nii.gz`` (``.tfm``/``.json`` for the transform
and registration sidecar), and ``deep/{input}`` or ``deep/{input}/{phase}`` for the tensors.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hccrad import paths, steps
from hccrad.errors import InputError
from hccrad.manifest import OutputSet, read_manifest

log = logging.getLogger(__name__)

PathLike = str | Path

#: Masks the sheet can give per phase (carried into the registered space).
MASK_KINDS = ("tumor", "liver", "reader2")
#: Region files of the normalisation stage: region name -> file stem.
REGION_STEMS = {"tumor": "index_tumor", "ring": "ring"}


def key(phase: str, stage: str, name: str) -> str:
    """Manifest key of a per-phase file, e.g. ``AP/register/image``."""
    return f"{phase}/{stage}/{name}"


def deep_key(name: str, phase: str | None = None) -> str:
    """Manifest key of a deep-input tensor (per phase, or stacked over phases)."""
    return f"deep/{name}/{phase}" if phase else f"deep/{name}"


def subregion_key(name: str, phase: str, subregion: int) -> str:
    """Manifest key of a habitat subregion's deep-input tensor (``assign_habitats``)."""
    return f"{deep_key(name, phase)}/h{subregion}"


def split_raw_inputs(
    named: Mapping[str, PathLike],
) -> tuple[dict[str, PathLike], dict[str, dict[str, PathLike]]]:
    """Raw inputs named ``image_{phase}`` and ``{kind}_{phase}`` (the workflow's input names) as
    ``({phase: image}, {phase: {kind: mask}})``; other names are ignored."""
    images: dict[str, PathLike] = {}
    masks: dict[str, dict[str, PathLike]] = {}
    for name, path in named.items():
        what, _, phase = name.rpartition("_")
        if what == "image":
            images[phase] = path
        elif what in MASK_KINDS:
            masks.setdefault(phase, {})[what] = path
    return images, masks


def register_patient(
    *,
    center: str,
    patient: str,
    images: Mapping[str, PathLike],
    masks: Mapping[str, Mapping[str, PathLike]],
    reference: str,
    settings: Any,
    n4: bool,
    manifest: PathLike,
    root: str = paths.RESULTS,
) -> None:
    """Convert, resample, bias-correct (``n4``) and register every phase; carry the given masks.

    Args:
        center, patient: Where the outputs go (``results/{center}/{patient}/...``).
        images: Phase -> raw image (DICOM folder, NRRD or NIfTI), the reference phase among them.
        masks: Phase -> {kind: raw mask} of the masks the sheet gives (kinds of
            :data:`MASK_KINDS`), each drawn on that phase's raw image.
        reference: The phase every other phase is registered onto.
        settings: The run's :class:`hccrad.config.Settings` (spacing, N4, registration, seed,
            keep_intermediates).
        n4: Whether the modality gets N4 bias-field correction.
        manifest: The job's manifest (its one declared output).

    Writes per phase ``register/{image.nii.gz, transform.tfm, registration.json, {kind}.nii.gz}``
    and ``n4/bias.nii.gz``; with ``keep_intermediates`` also ``convert/``, ``resample/`` and
    ``n4/`` images. Intermediates otherwise live in a temporary folder (uncompressed).
    """
    if reference not in images:
        raise InputError(f"reference phase {reference} has no image", patient=patient)
    order = [reference, *(ph for ph in images if ph != reference)]
    keep = settings.keep_intermediates

    def where(phase: str, stage: str, name: str) -> str:
        return paths.image_path(stage, name, center=center, patient=patient, phase=phase, root=root)

    with (
        OutputSet(manifest, patient=patient, stage="register") as out,
        tempfile.TemporaryDirectory(prefix=f"hccrad-{patient}-") as tmp,
    ):

        def intermediate(phase: str, stage: str) -> str:
            if keep:
                return out.add(key(phase, stage, "image"), where(phase, stage, "image.nii.gz"))
            return str(Path(tmp) / f"{phase}_{stage}.nii")

        prereg: dict[str, str] = {}
        converted: dict[str, str] = {}
        for ph in order:
            converted[ph] = intermediate(ph, "convert")
            steps.convert_image(images[ph], converted[ph], patient=patient, phase=ph)
            resampled = intermediate(ph, "resample")
            steps.resample_image(
                converted[ph], resampled, spacing=settings.spacing, patient=patient, phase=ph
            )
            prereg[ph] = resampled
            if n4:
                prereg[ph] = intermediate(ph, "n4")
                liver = masks.get(ph, {}).get("liver")
                steps.correct_bias(
                    resampled,
                    prereg[ph],
                    out.add(key(ph, "n4", "bias"), where(ph, "n4", "bias.nii.gz")),
                    shrink_factor=settings.n4_shrink_factor,
                    iterations=settings.n4_iterations,
                    convergence_threshold=settings.n4_convergence_threshold,
                    spline_distance_mm=settings.n4_spline_distance_mm,
                    liver_mask=liver,
                    mask_image=converted[ph] if liver is not None else None,
                    patient=patient,
                    phase=ph,
                )
        for ph in order:
            registered = out.add(
                key(ph, "register", "image"), where(ph, "register", "image.nii.gz")
            )
            transform = out.add(
                key(ph, "register", "transform"), where(ph, "register", "transform.tfm")
            )
            steps.register_phase(
                prereg[reference],
                prereg[ph],
                registered,
                transform,
                out.add(key(ph, "register", "info"), where(ph, "register", "registration.json")),
                is_reference=ph == reference,
                method=settings.registration_method,
                refine=settings.registration_refine,
                seed=settings.seed,
                patient=patient,
                phase=ph,
            )
            for kind in MASK_KINDS:
                raw = masks.get(ph, {}).get(kind)
                if raw is None:
                    continue
                steps.carry_mask(
                    raw,
                    converted[ph],
                    registered,
                    transform,
                    out.add(key(ph, "register", kind), where(ph, "register", f"{kind}.nii.gz")),
                    kind=kind,
                    patient=patient,
                    phase=ph,
                )
    log.info("%s: %d phases registered onto %s", patient, len(order), reference)


def registered_mask(
    reg: Mapping[str, Path], phase: str, kind: str, reference: str, predicted: Mapping[str, Any]
) -> Path | None:
    """The registered mask of ``kind`` standing for ``phase``: the phase's own, else the
    reference phase's (all phases share the registered grid), else the U-Net's, else None."""
    for ph in (phase, reference):
        k = key(ph, "register", kind)
        if k in reg:
            return Path(reg[k])
    p = predicted.get(kind)
    return Path(p) if p is not None else None


def normalize_patient(
    *,
    center: str,
    patient: str,
    modality: str,
    phases: Sequence[str],
    registration: PathLike,
    predicted: Mapping[str, PathLike],
    settings: Any,
    deep_inputs: Sequence[Any],
    manifest: PathLike,
    dst_qc_png: PathLike,
    dst_qc_json: PathLike,
    root: str = paths.RESULTS,
) -> None:
    """Normalise every phase, build its index lesion and ring, the deep inputs and the QC.

    Args:
        phases: The patient's phases, in sheet order (the QC figure's order).
        registration: The patient's :func:`register_patient` manifest.
        predicted: ``{"liver"|"tumor": mask}`` predicted by the U-Net on the reference phase,
            for the kinds the sheet does not give (empty for most patients).
        settings: The run's :class:`hccrad.config.Settings`.
        deep_inputs: The :class:`hccrad.config.DeepInputSpec` entries this patient gets.
        manifest: The job's manifest; ``dst_qc_png`` / ``dst_qc_json`` its QC outputs.

    A phase has regions when a tumor mask stands for it (own, reference phase's or predicted);
    the ring is clipped to the liver when configured and a liver mask stands for the phase.
    """
    mod = settings.modality(modality)
    reg = read_manifest(registration)
    ref = mod.reference_phase

    def where(phase: str, stage: str, name: str) -> str:
        return paths.image_path(stage, name, center=center, patient=patient, phase=phase, root=root)

    qc: dict[str, PathLike] = {}
    with OutputSet(manifest, patient=patient, stage="normalize") as out:
        for ph in phases:
            liver = registered_mask(reg, ph, "liver", ref, predicted)
            tumor = registered_mask(reg, ph, "tumor", ref, predicted)
            reader2 = registered_mask(reg, ph, "reader2", ref, {})
            image = out.add(key(ph, "normalize", "image"), where(ph, "normalize", "image.nii.gz"))
            steps.normalize_image(
                reg[key(ph, "register", "image")],
                image,
                normalization=mod.normalization,
                liver_mask=liver,
                patient=patient,
                phase=ph,
            )
            qc[f"image_{ph}"] = image
            qc[f"registration_{ph}"] = reg[key(ph, "register", "info")]
            for name, mask in (("liver", liver), ("reader2", reader2)):
                if mask is not None:
                    qc[f"{name}_{ph}"] = mask
            if tumor is None:
                continue
            index = out.add(
                key(ph, "regions", "index_tumor"), where(ph, "regions", "index_tumor.nii.gz")
            )
            ring = out.add(key(ph, "regions", "ring"), where(ph, "regions", "ring.nii.gz"))
            steps.make_tumor_regions(
                tumor,
                liver if settings.ring_clip_to_liver else None,
                index,
                ring,
                distance_mm=settings.ring_distance_mm,
                patient=patient,
                phase=ph,
            )
            qc.update({f"tumor_{ph}": tumor, f"index_tumor_{ph}": index, f"ring_{ph}": ring})
        for spec in deep_inputs:
            region = REGION_STEMS[spec.region]
            mask = out.files.get(key(spec.phases[0], "regions", region))
            if mask is None or not set(spec.phases) <= set(phases):
                raise InputError(
                    f"deep input {spec.name} needs phases {list(spec.phases)} and a "
                    f"{spec.region} region on {spec.phases[0]}",
                    patient=patient,
                )
            scale = mod.normalization.unit_scale
            if spec.per_phase:
                for ph in spec.phases:
                    steps.build_deep_input(
                        {ph: out.files[key(ph, "normalize", "image")]},
                        out.files[key(ph, "regions", region)],
                        out.add(
                            deep_key(spec.name, ph),
                            where(ph, "deep", f"{spec.name}.npz"),
                        ),
                        spec=spec,
                        scale=scale,
                        patient=patient,
                    )
            else:
                steps.build_deep_input(
                    {ph: out.files[key(ph, "normalize", "image")] for ph in spec.phases},
                    mask,
                    out.add(
                        deep_key(spec.name),
                        paths.patient_path(
                            "deep", f"{spec.name}.npz", center=center, patient=patient, root=root
                        ),
                    ),
                    spec=spec,
                    scale=scale,
                    patient=patient,
                )
        steps.patient_qc(
            center=center,
            patient=patient,
            modality=modality,
            inputs=qc,
            dst_png=out.add("qc/png", dst_qc_png),
            dst_json=out.add("qc/json", dst_qc_json),
        )


def extract_patient_radiomics(
    *,
    patient: str,
    phases: Sequence[str],
    reference: str,
    registration: PathLike,
    normalization: PathLike,
    stage: str,
    regions: Sequence[str],
    params: PathLike,
    dst_json: PathLike,
) -> None:
    """Whole-region radiomics of every phase with regions, and of the second reader's tumor.

    Args:
        phases: The patient's phases (those with regions get features).
        reference: The reference phase (its second-reader mask stands for phases without one).
        registration, normalization: The patient's two preprocessing manifests.
        stage: The image the features are computed on (``normalize`` or ``register``).
        regions: Region names (``tumor``: index lesion, ``ring``).
        params: The PyRadiomics parameter file.
        dst_json: ``{"patient", "reader1": [record per phase], "reader2": [...]}`` with each
            record as written by :func:`hccrad.steps.extract_radiomics` (``reader2``: the second
            reader's index lesion on the same image, for phases where that mask stands).
    """
    from hccrad import imageio

    reg = read_manifest(registration)
    norm = read_manifest(normalization)
    files = {**reg, **norm}
    phases = [ph for ph in phases if key(ph, "regions", "index_tumor") in norm]
    out: dict[str, Any] = {"patient": patient, "reader1": [], "reader2": []}
    with tempfile.TemporaryDirectory(prefix=f"hccrad-{patient}-") as tmp:
        for ph in phases:
            image = files[key(ph, stage, "image")]
            target = Path(tmp) / f"{ph}.json"
            steps.extract_radiomics(
                image,
                {r: norm[key(ph, "regions", REGION_STEMS[r])] for r in regions},
                target,
                params=params,
                patient=patient,
                phase=ph,
            )
            out["reader1"].append(_read_json(target))
            reader2 = registered_mask(reg, ph, "reader2", reference, {})
            if reader2 is not None:
                steps.extract_radiomics(
                    image,
                    {"tumor": reader2},
                    target,
                    params=params,
                    patient=patient,
                    phase=ph,
                    index_lesion=True,
                )
                out["reader2"].append(_read_json(target))
    imageio.write_json(out, dst_json)


def _read_json(path: PathLike) -> Any:
    import json

    with open(path) as fh:
        return json.load(fh)


def stage_images(
    registration: PathLike, normalization: PathLike, stage: str, phases: Sequence[str]
) -> dict[str, Path]:
    """Phase -> the patient's image of ``stage`` (``register`` or ``normalize``), from its
    preprocessing manifests."""
    files = {**read_manifest(registration), **read_manifest(normalization)}
    return {ph: Path(files[key(ph, stage, "image")]) for ph in phases}


def compute_patient_voxel_maps(
    *,
    patient: str,
    registration: PathLike,
    normalization: PathLike,
    stage: str,
    phases: Sequence[str],
    outputs: Mapping[str, Sequence[PathLike]],
    spacing: float,
    settings: Any,
    engine: str,
) -> None:
    """Voxel feature maps of every habitat phase inside the index lesion of the first one.

    Args:
        phases: The habitat phases; the first one's index lesion is the mask of all.
        outputs: Phase -> (maps folder, resampled image, resampled mask), as in
            :func:`hccrad.steps.compute_voxel_maps`.
    """
    images = stage_images(registration, normalization, stage, phases)
    mask = read_manifest(normalization)[key(phases[0], "regions", REGION_STEMS["tumor"])]
    for ph in phases:
        maps_dir, dst_image, dst_mask = outputs[ph]
        steps.compute_voxel_maps(
            images[ph],
            mask,
            maps_dir,
            dst_image,
            dst_mask,
            spacing=spacing,
            settings=settings,
            engine=engine,
            patient=patient,
            phase=ph,
        )


def deep_input_files(manifests: Mapping[str, PathLike], input_key: str) -> dict[str, Path]:
    """Patient -> the tensor listed under ``input_key`` (:func:`deep_key`) in that patient's
    :func:`normalize_patient` manifest."""
    return {p: Path(read_manifest(m)[input_key]) for p, m in manifests.items()}


def subregion_input_files(
    manifests: Mapping[str, PathLike], input_key: str
) -> dict[int, dict[str, Path]]:
    """Subregion -> patient -> tensor, from the patients' ``assign_habitats`` deep manifests
    (keys ``{input_key}/h{i}``, :func:`subregion_key`). A patient without a tensor for a
    subregion (a habitat smaller than one image voxel) is absent from that subregion's mapping.
    """
    prefix = f"{input_key}/h"
    out: dict[int, dict[str, Path]] = {}
    for p, m in manifests.items():
        for k, path in read_manifest(m).items():
            if k.startswith(prefix) and k[len(prefix) :].isdigit():
                out.setdefault(int(k[len(prefix) :]), {})[p] = Path(path)
    return {i: dict(sorted(out[i].items())) for i in sorted(out)}


def segmentation_case(registration: PathLike, reference: str) -> dict[str, Path]:
    """The registered reference image and given liver and tumor masks of one patient (U-Net
    training and evaluation): ``{"image", "liver", "tumor"}``, the masks only when given."""
    reg = read_manifest(registration)
    case = {"image": Path(reg[key(reference, "register", "image")])}
    for kind in ("liver", "tumor"):
        path = reg.get_path(key(reference, "register", kind))
        if path is not None:
            case[kind] = Path(path)
    return case


def preprocess_patient(
    *,
    register: Mapping[str, Any],
    normalize: Mapping[str, Any],
) -> None:
    """:func:`register_patient` then :func:`normalize_patient` in one job (patients whose masks
    are all given: nothing waits for the U-Net in between).

    Args:
        register: Keyword arguments of :func:`register_patient`.
        normalize: Keyword arguments of :func:`normalize_patient` (its ``registration`` is the
            manifest the first step writes).

    When the second step fails, the first step's files and manifest are removed too: the job
    fails as a whole and leaves none of its files.
    """
    register_patient(**register)
    try:
        normalize_patient(**normalize)
    except BaseException:
        import json

        manifest = Path(register["manifest"])
        with contextlib.suppress(OSError, ValueError, KeyError):
            for entry in json.loads(manifest.read_text())["files"].values():
                Path(entry["path"]).unlink(missing_ok=True)
        manifest.unlink(missing_ok=True)
        log.info("%s: registration outputs removed (the job failed)", register["patient"])
        raise
