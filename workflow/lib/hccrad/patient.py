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
  second reader's tumor and reader 1's repeat outline where given).

Manifest keys are ``{phase}/{stage}/{name}`` with the file at
``results/{center}/{patient}/{phase}/{stage}/{name}.nii.gz`` (``.tfm``/``.json`` for the transform
and registration sidecar), and ``deep/{input}`` or ``deep/{input}/{phase}`` for the tensors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hccrad import fileio, paths, steps
from hccrad.config import Resampling
from hccrad.errors import InputError
from hccrad.manifest import OutputSet, read_manifest
from hccrad.steps.keys import deep_key, key, mask_phase_order

log = logging.getLogger(__name__)

PathLike = str | Path

#: Masks the sheet can give per phase (carried into the registered space).
MASK_KINDS = ("tumor", "liver", "reader2", "reader1_repeat")
#: Second outlines of the tumor whose features the ICC tables compare with reader 1's: reader 2's
#: (inter-observer) and reader 1's repeat (intra-observer).
SECOND_OUTLINES = ("reader2", "reader1_repeat")
#: Region files of the normalisation stage: region name -> file stem.
REGION_STEMS = {"tumor": "index_tumor", "ring": "ring"}


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


@dataclass(frozen=True)
class _PhaseFiles:
    """Where one patient's per-phase files go; each destination is listed in the job's
    manifest (``out``) under its key (:func:`key`)."""

    out: OutputSet
    center: str
    patient: str
    root: str

    def path(self, phase: str, stage: str, filename: str) -> str:
        """``{root}/{center}/{patient}/{phase}/{stage}/{filename}``."""
        return paths.image_path(
            stage, filename, center=self.center, patient=self.patient, phase=phase, root=self.root
        )

    def add(self, phase: str, stage: str, name: str, filename: str) -> str:
        """List the file ``{phase}/{stage}/{name}`` in the manifest and return its path."""
        return self.out.add(key(phase, stage, name), self.path(phase, stage, filename))


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
    series: Mapping[str, str] | None = None,
    segments: Mapping[str, Mapping[str, str]] | None = None,
    round_intensities: bool = False,
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
        series: Phase -> the series to read from an image folder holding several (the sheet's
            ``series`` column); phases not listed read the folder's only series.
        segments: Phase -> {kind: selection} within the mask files (the sheet's
            ``{kind}_segment`` columns); kinds not listed take every nonzero voxel or the file's
            only segment.
        round_intensities: Round the images to integers after each interpolation (CT with
            ``resample.round_ct``: HU, IBSI-1).

    Writes per phase ``register/{image.nii.gz, transform.tfm, registration.json, {kind}.nii.gz}``
    and ``n4/bias.nii.gz``; with ``keep_intermediates`` also ``convert/``, ``resample/`` and
    ``n4/`` images. Intermediates otherwise live in a temporary folder (uncompressed).
    """
    if reference not in images:
        raise InputError(f"reference phase {reference} has no image", patient=patient)
    order = [reference, *(ph for ph in images if ph != reference)]
    series = series or {}
    segments = segments or {}
    with (
        OutputSet(manifest, patient=patient, stage="register") as out,
        tempfile.TemporaryDirectory(prefix=f"hccrad-{patient}-") as tmp,
    ):
        files = _PhaseFiles(out, center, patient, root)
        scratch = None if settings.keep_intermediates else Path(tmp)
        prereg: dict[str, str] = {}
        converted: dict[str, str] = {}
        for ph in order:
            converted[ph], prereg[ph] = _prepare_phase(
                files, ph, images[ph], masks.get(ph, {}), settings=settings, n4=n4, scratch=scratch,
                series=series.get(ph), segments=segments.get(ph, {}),
                round_intensities=round_intensities,
            )  # fmt: skip
        for ph in order:
            _register_and_carry(
                files, ph, prereg[reference], prereg[ph], converted[ph], masks.get(ph, {}),
                settings=settings, is_reference=ph == reference, segments=segments.get(ph, {}),
                round_intensities=round_intensities,
            )  # fmt: skip
    log.info("%s: %d phases registered onto %s", patient, len(order), reference)


def _prepare_phase(
    files: _PhaseFiles,
    phase: str,
    image: PathLike,
    masks: Mapping[str, PathLike],
    *,
    settings: Any,
    n4: bool,
    scratch: Path | None,
    series: str | None = None,
    segments: Mapping[str, str] | None = None,
    round_intensities: bool = False,
) -> tuple[str, str]:
    """Convert, resample and (``n4``) bias-correct one phase's raw image (``series`` of its
    folder; ``segments``: the selections within its mask files).

    The intermediates go to ``scratch`` (uncompressed), or, when it is None
    (``keep_intermediates``), to their stage folders, listed in the manifest; the bias field is
    always kept.

    Returns:
        ``(converted image, image to register)``.
    """

    def intermediate(stage: str) -> str:
        if scratch is None:
            return files.add(phase, stage, "image", "image.nii.gz")
        return str(scratch / f"{phase}_{stage}.nii")

    patient = files.patient
    converted = intermediate("convert")
    steps.convert_image(image, converted, patient=patient, phase=phase, series=series)
    resampled = intermediate("resample")
    steps.resample_image(
        converted,
        resampled,
        spacing=settings.spacing,
        patient=patient,
        phase=phase,
        resampling=_resampling(settings),
        round_intensities=round_intensities,
    )
    if not n4:
        return converted, resampled
    corrected = intermediate("n4")
    liver = masks.get("liver")
    steps.correct_bias(
        resampled,
        corrected,
        files.add(phase, "n4", "bias", "bias.nii.gz"),
        shrink_factor=settings.n4_shrink_factor,
        iterations=settings.n4_iterations,
        convergence_threshold=settings.n4_convergence_threshold,
        spline_distance_mm=settings.n4_spline_distance_mm,
        liver_mask=liver,
        liver_segment=(segments or {}).get("liver"),
        mask_image=converted if liver is not None else None,
        patient=patient,
        phase=phase,
    )
    return converted, corrected


def _register_and_carry(
    files: _PhaseFiles,
    phase: str,
    fixed: PathLike,
    moving: PathLike,
    converted: PathLike,
    masks: Mapping[str, PathLike],
    *,
    settings: Any,
    is_reference: bool,
    segments: Mapping[str, str] | None = None,
    round_intensities: bool = False,
) -> None:
    """Register one phase onto the reference phase and carry its given masks (raw, drawn on
    ``converted``; ``segments`` selects within their files) into the registered space."""
    how = _resampling(settings)
    registered = files.add(phase, "register", "image", "image.nii.gz")
    transform = files.add(phase, "register", "transform", "transform.tfm")
    steps.register_phase(
        fixed,
        moving,
        registered,
        transform,
        files.add(phase, "register", "info", "registration.json"),
        is_reference=is_reference,
        method=settings.registration_method,
        refine=settings.registration_refine,
        seed=settings.seed,
        patient=files.patient,
        phase=phase,
        interpolation=how.interpolation,
        round_intensities=round_intensities,
    )
    for kind in MASK_KINDS:
        raw = masks.get(kind)
        if raw is None:
            continue
        steps.carry_mask(
            raw,
            converted,
            registered,
            transform,
            files.add(phase, "register", kind, f"{kind}.nii.gz"),
            kind=kind,
            patient=files.patient,
            phase=phase,
            segment=(segments or {}).get(kind),
            mask_threshold=how.mask_threshold,
        )


def _resampling(settings: Any) -> Resampling:
    """The run's resampling (the origin-anchored grid and nearest-neighbour masks of settings
    that predate it)."""
    how = getattr(settings, "resampling", None)
    return how if how is not None else Resampling()


def registered_mask(
    reg: Mapping[str, Path],
    phase: str,
    kind: str,
    reference: str,
    predicted: Mapping[str, Any],
    phases: Sequence[str] = (),
) -> Path | None:
    """The registered mask of ``kind`` standing for ``phase``: the phase's own, else the
    reference phase's, else the first other phase's in ``phases`` (the modality's phase order;
    phases the manifest holds but ``phases`` does not name come last, by name), else the U-Net's,
    else None. All phases share the registered grid, so a mask drawn on any phase reaches every
    phase through that phase's registration. The same order as
    :meth:`hccrad.plan.CohortPlan.mask_source_phase`."""
    suffix = f"/register/{kind}"
    held = sorted(k[: -len(suffix)] for k in reg if k.endswith(suffix))
    for ph in mask_phase_order(phase, reference, (*phases, *held)):
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
    qc: dict[str, PathLike] = {}
    with OutputSet(manifest, patient=patient, stage="normalize") as out:
        files = _PhaseFiles(out, center, patient, root)
        for ph in phases:
            qc.update(_normalize_phase(files, reg, ph, mod, predicted, settings=settings))
        for spec in deep_inputs:
            _build_deep_inputs(files, spec, phases, scale=mod.normalization.unit_scale)
        steps.patient_qc(
            center=center,
            patient=patient,
            modality=modality,
            inputs=qc,
            dst_png=out.add("qc/png", dst_qc_png),
            dst_json=out.add("qc/json", dst_qc_json),
        )


def _normalize_phase(
    files: _PhaseFiles,
    reg: Mapping[str, Path],
    phase: str,
    mod: Any,
    predicted: Mapping[str, PathLike],
    *,
    settings: Any,
) -> dict[str, PathLike]:
    """Normalise one phase and, when a tumor mask stands for it, build its index lesion and
    ring.

    Returns:
        The phase's inputs of :func:`hccrad.steps.patient_qc` (named ``{what}_{phase}``).
    """
    ref = mod.reference_phase
    order = mod.phases
    liver = registered_mask(reg, phase, "liver", ref, predicted, order)
    tumor = registered_mask(reg, phase, "tumor", ref, predicted, order)
    reader2 = registered_mask(reg, phase, "reader2", ref, {}, order)
    repeat = registered_mask(reg, phase, "reader1_repeat", ref, {}, order)
    image = files.add(phase, "normalize", "image", "image.nii.gz")
    steps.normalize_image(
        reg[key(phase, "register", "image")],
        image,
        normalization=mod.normalization,
        liver_mask=liver,
        patient=files.patient,
        phase=phase,
    )
    qc: dict[str, PathLike] = {
        f"image_{phase}": image,
        f"registration_{phase}": reg[key(phase, "register", "info")],
    }
    for name, mask in (("liver", liver), ("reader2", reader2), ("reader1_repeat", repeat)):
        if mask is not None:
            qc[f"{name}_{phase}"] = mask
    if tumor is None:
        return qc
    index = files.add(phase, "regions", "index_tumor", "index_tumor.nii.gz")
    ring = files.add(phase, "regions", "ring", "ring.nii.gz")
    steps.make_tumor_regions(
        tumor,
        liver if settings.ring_clip_to_liver else None,
        index,
        ring,
        distance_mm=settings.ring_distance_mm,
        patient=files.patient,
        phase=phase,
    )
    qc.update({f"tumor_{phase}": tumor, f"index_tumor_{phase}": index, f"ring_{phase}": ring})
    return qc


def _build_deep_inputs(
    files: _PhaseFiles, spec: Any, phases: Sequence[str], *, scale: float
) -> None:
    """The tensors of one ``deep.inputs`` entry (:class:`hccrad.config.DeepInputSpec`): one per
    phase, or one stacked over its phases, from the normalised images and the region masks
    already listed in the manifest."""
    done = files.out.files
    region = REGION_STEMS[spec.region]
    mask = done.get(key(spec.phases[0], "regions", region))
    if mask is None or not set(spec.phases) <= set(phases):
        raise InputError(
            f"deep input {spec.name} needs phases {list(spec.phases)} and a "
            f"{spec.region} region on {spec.phases[0]}",
            patient=files.patient,
        )
    if spec.per_phase:
        for ph in spec.phases:
            steps.build_deep_input(
                {ph: done[key(ph, "normalize", "image")]},
                done[key(ph, "regions", region)],
                files.out.add(deep_key(spec.name, ph), files.path(ph, "deep", f"{spec.name}.npz")),
                spec=spec,
                scale=scale,
                patient=files.patient,
            )
        return
    stacked = paths.patient_path(
        "deep", f"{spec.name}.npz", center=files.center, patient=files.patient, root=files.root
    )
    steps.build_deep_input(
        {ph: done[key(ph, "normalize", "image")] for ph in spec.phases},
        mask,
        files.out.add(deep_key(spec.name), stacked),
        spec=spec,
        scale=scale,
        patient=files.patient,
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
    """Whole-region radiomics of every phase with regions, and of the second outlines' tumors
    (reader 2's, reader 1's repeat: :data:`SECOND_OUTLINES`).

    Args:
        phases: The patient's phases (those with regions get features).
        reference: The reference phase (its second outlines stand for phases without one).
        registration, normalization: The patient's two preprocessing manifests.
        stage: The image the features are computed on (``normalize`` or ``register``).
        regions: Region names (``tumor``: index lesion, ``ring``).
        params: The PyRadiomics parameter file.
        dst_json: ``{"patient", "reader1": [record per phase], "reader2": [...],
            "reader1_repeat": [...]}`` with each record as written by
            :func:`hccrad.steps.extract_radiomics` (``reader2``: the second reader's index lesion
            on the same image, for phases where that mask stands; ``reader1_repeat``: reader 1's
            repeat outline's, the same way; empty lists without those masks).
    """
    reg = read_manifest(registration)
    norm = read_manifest(normalization)
    files = {**reg, **norm}
    phases = [ph for ph in phases if key(ph, "regions", "index_tumor") in norm]
    out: dict[str, Any] = {"patient": patient, "reader1": [], **{r: [] for r in SECOND_OUTLINES}}
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
            for outline in SECOND_OUTLINES:
                mask = registered_mask(reg, ph, outline, reference, {}, phases)
                if mask is None:
                    continue
                steps.extract_radiomics(
                    image,
                    {"tumor": mask},
                    target,
                    params=params,
                    patient=patient,
                    phase=ph,
                    index_lesion=True,
                )
                out[outline].append(_read_json(target))
    fileio.write_json(out, dst_json)


def _read_json(path: PathLike) -> Any:
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


def phase_input_files(
    manifests: Mapping[str, PathLike], phase_keys: Mapping[str, str]
) -> dict[str, dict[str, Path]]:
    """Phase -> patient -> tensor of a per-phase bundle (``phase_keys``: phase -> manifest key,
    :attr:`hccrad.plan.DeepModelInput.phase_keys`), from the patients' normalize manifests."""
    listed = {p: read_manifest(m) for p, m in manifests.items()}
    return {ph: {p: Path(files[k]) for p, files in listed.items()} for ph, k in phase_keys.items()}


def subregion_input_files(
    manifests: Mapping[str, PathLike], input_key: str
) -> dict[int, dict[str, Path]]:
    """Subregion -> patient -> tensor, from the patients' ``assign_habitats`` deep manifests
    (keys ``{input_key}/h{i}``, :func:`hccrad.steps.keys.subregion_key`). A patient without a
    tensor for a subregion (a habitat smaller than one image voxel) is absent from that
    subregion's mapping.
    """
    prefix = f"{input_key}/h"
    out: dict[int, dict[str, Path]] = {}
    for p, m in manifests.items():
        for k, path in read_manifest(m).items():
            if k.startswith(prefix) and k[len(prefix) :].isdigit():
                out.setdefault(int(k[len(prefix) :]), {})[p] = Path(path)
    return {i: dict(sorted(out[i].items())) for i in sorted(out)}


def segmentation_case(
    registration: PathLike, reference: str, phases: Sequence[str] = ()
) -> dict[str, Path]:
    """The registered reference image and given liver and tumor masks of one patient (U-Net
    training and evaluation): ``{"image", "liver", "tumor"}``, the masks only when given (on
    any phase, ``phases`` the modality's phase order: :func:`registered_mask`)."""
    reg = read_manifest(registration)
    case = {"image": Path(reg[key(reference, "register", "image")])}
    for kind in ("liver", "tumor"):
        path = registered_mask(reg, reference, kind, reference, {}, phases)
        if path is not None:
            case[kind] = path
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
        manifest = Path(register["manifest"])
        with contextlib.suppress(OSError, ValueError, KeyError):
            for entry in json.loads(manifest.read_text())["files"].values():
                Path(entry["path"]).unlink(missing_ok=True)
        manifest.unlink(missing_ok=True)
        log.info("%s: registration outputs removed (the job failed)", register["patient"])
        raise
