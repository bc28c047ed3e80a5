"""One synthetic patient in memory (:func:`generate_patient`) and a whole cohort on disk
(:func:`write_cohort`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from hccrad.errors import ConfigError
from hccrad.fileio import write_json, write_text
from hccrad.imageio import write_image
from hccrad.sheets import BASE_COLUMNS as COHORT_COLUMNS  # the columns the cohort fills
from hccrad.synth.anatomy import FOV_MM, Habitat, Phantom, build_phantom
from hccrad.synth.biology import (
    CENTERS,
    MODALITY_CODE,
    NULL_PERMUTED_COLUMNS,
    Biology,
    center_of,
    number_in_center,
    patient_id,
    sample_biology,
)
from hccrad.synth.blood import BLOOD_COUNTS, blood_counts
from hccrad.synth.imaging import (
    MOTION_COLUMNS,
    PHASES,
    SCANNERS,
    Acquisition,
    Motion,
    Scanner,
    bias_field,
    decode_masks,
    render_intensity,
    resample_to_phase,
    sample_acquisition,
    sample_motion,
    slice_profile_blur,
)
from hccrad.synth.readers import reader_columns, reader_scores
from hccrad.synth.writers import identity, write_dicom_series, write_tsv

log = logging.getLogger(__name__)

CLINICAL_COLUMNS: tuple[str, ...] = (
    "patient",
    "center",
    "modality",
    "acquisition_date",
    "age",
    "sex",
    "afp",
    "ast",
    "alt",
    "ggt",
    "tbil",
    "alb",
    *BLOOD_COUNTS,
    "child_pugh",
    "hbv",
    "hcv",
    "cirrhosis",
    "tumor_size_mm",
    "tumor_number",
    *reader_columns(),
    "bclc",
    "cnlc",
    "field_strength",
    "vendor",
    "grade_pd",
    "mvi",
    "early_recurrence",
    "proliferative",
    "os_months",
    "os_event",
    "rfs_months",
    "rfs_event",
    "pfs_months",
    "pfs_event",
    "tace_response",
)
MOTION_TSV_COLUMNS: tuple[str, ...] = ("patient", "phase", *MOTION_COLUMNS)
_TRUE_LABELS: tuple[str, ...] = (
    "grade_pd",
    "mvi",
    "early_recurrence",
    "proliferative",
    "tace_response",
)
#: Per-patient random streams. Columns added to the clinical table draw from a stream of their
#: own (readers, blood), after every earlier draw, so existing values and images never change;
#: so does reader 1's repeat outline (reader1_repeat), which leaves every other image and mask as
#: it was.
_STREAMS = {
    "biology": 0,
    "anatomy": 1,
    "acquisition": 2,
    "noise": 3,
    "identity": 4,
    "readers": 5,
    "blood": 6,
    "reader1_repeat": 7,
}


@dataclass(frozen=True)
class SynthOptions:
    """Settings of a synthetic cohort (see :func:`write_cohort` for their meaning)."""

    seed: int = 42
    n_patients: int = 48
    modality: str = "both"
    null: bool = False
    dicom_center: str | None = "B"
    nrrd_center: str | None = "C"
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.modality not in ("MR", "CT", "both"):
            raise ConfigError(f"modality must be MR, CT or both, not {self.modality!r}")
        if int(self.n_patients) < 1:
            raise ConfigError(f"n_patients must be >= 1, not {self.n_patients}")
        for name in ("dicom_center", "nrrd_center"):
            v = getattr(self, name)
            if v is not None and v not in CENTERS:
                raise ConfigError(f"{name} must be one of {CENTERS} or None, not {v!r}")
        if self.dicom_center is not None and self.dicom_center == self.nrrd_center:
            raise ConfigError("dicom_center and nrrd_center must differ")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be >= 1, not {self.workers}")

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities generated, MR first."""
        return ("MR", "CT") if self.modality == "both" else (self.modality,)


@dataclass
class SynthPatient:
    """One generated patient, everything in memory.

    Attributes:
        patient, center, modality, index: identity (``index`` is 0-based within the modality).
        phases: the phases, in :data:`PHASES` order.
        images: phase -> the image as written (SimpleITK, int16; HU for CT, MR signal units).
        clean: phase -> the noise-free, bias-free image (float32, same geometry).
        bias: phase -> the multiplicative MR bias field (float32; empty dict for CT). The written MR
            image is ``round(Rician(clean * bias, sigma))``.
        masks: phase -> {"tumor", "liver", "tumor_reader2", "tumor_reader1_repeat"} -> uint8 0/1
            images (always made here; :attr:`has_masks` / :attr:`has_reader2` say whether
            :func:`write_cohort` writes them; reader 1's repeat goes with reader 2's).
        habitat: phase -> uint8 :class:`~hccrad.synth.anatomy.Habitat` label map.
        motion: phase -> true :class:`~hccrad.synth.imaging.Motion` (``T_p``, see imaging module).
        hidden: hidden variables and image-generating values.
        clinical: clinical-table values (unpermuted, i.e. the patient's true labels).
        acquisition: the :class:`~hccrad.synth.imaging.Acquisition` (grid, scale, noise, bias amp.).
        phantom: the patient-frame anatomy (1 mm), or None when not kept.
        has_masks, has_reader2: mask availability in the written cohort (reader 1's repeat
            outline is written for the patients with a second reader).
        measured: values measured on the phantom (habitat fractions, index diameter, ...).
    """

    patient: str
    center: str
    modality: str
    index: int
    phases: tuple[str, ...]
    images: dict[str, sitk.Image] = field(default_factory=dict)
    clean: dict[str, sitk.Image] = field(default_factory=dict)
    bias: dict[str, sitk.Image] = field(default_factory=dict)
    masks: dict[str, dict[str, sitk.Image]] = field(default_factory=dict)
    habitat: dict[str, sitk.Image] = field(default_factory=dict)
    motion: dict[str, Motion] = field(default_factory=dict)
    hidden: dict[str, float] = field(default_factory=dict)
    clinical: dict[str, Any] = field(default_factory=dict)
    acquisition: Acquisition | None = None
    phantom: Phantom | None = None
    has_masks: bool = True
    has_reader2: bool = False
    measured: dict[str, float] = field(default_factory=dict)


def _rng(seed: int, modality: str, index: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), MODALITY_CODE[modality], int(index), _STREAMS[stream]])


def mask_availability(index: int) -> tuple[bool, bool]:
    """``(has_masks, has_reader2)`` of patient ``index`` (0-based within its modality).

    With ``k`` the patient's number within its center: no masks when ``k % 12 == 2`` (about 8-10 %,
    one per center as soon as a center has two patients, i.e. ``n_patients >= 8``); a second reader
    when masks exist and ``k % 3 == 1`` (about 30 %).
    """
    k = number_in_center(index)
    has = k % 12 != 2
    return has, has and k % 3 == 1


def sample_patient_biology(
    modality: str,
    index: int,
    *,
    seed: int = 42,
    hidden_overrides: Mapping[str, float] | None = None,
) -> Biology:
    """The biology (hidden variables, clinical row, labels, survival) of one patient, no images.

    Identical to what :func:`generate_patient` uses; cheap enough for thousands of patients.
    The clinical row also holds the two readers' scores (:mod:`hccrad.synth.readers`, their
    hemorrhage latent joins the hidden values) and the blood counts
    (:mod:`hccrad.synth.blood`), each from its own stream, in :data:`CLINICAL_COLUMNS` order.
    """
    if modality not in PHASES:
        raise ConfigError(f"modality must be MR or CT, not {modality!r}")
    if int(index) < 0:
        raise ConfigError(f"patient index must be >= 0, not {index}")
    bio = sample_biology(
        _rng(seed, modality, index, "biology"),
        modality,
        center_of(index),
        dict(hidden_overrides or {}),
    )
    latent, scores = reader_scores(_rng(seed, modality, index, "readers"), bio.hidden, bio.clinical)
    counts = blood_counts(_rng(seed, modality, index, "blood"), bio.clinical)
    row = {**bio.clinical, **scores, **counts}
    bio.hidden.update(latent)
    bio.clinical = {c: row[c] for c in CLINICAL_COLUMNS if c in row}
    return bio


def _sample_geometry(
    seed: int,
    modality: str,
    index: int,
    acquisition_overrides: Mapping[str, float] | None,
) -> tuple[np.ndarray, Acquisition, dict[str, Motion]]:
    """The FOV centre, the acquisition and the per-phase motions (the "acquisition" stream)."""
    scanner = SCANNERS[(center_of(index), modality)]
    if acquisition_overrides:
        scanner = replace(scanner, **acquisition_overrides)
    rng_acq = _rng(seed, modality, index, "acquisition")
    fov_center = np.array(
        [
            round(float(rng_acq.uniform(-75, -45)), 2),
            round(float(rng_acq.uniform(-10, 25)), 2),
            round(float(rng_acq.uniform(-180, -120)), 2),
        ]
    )
    acq = sample_acquisition(rng_acq, scanner, modality, fov_center)
    motions = {p: sample_motion(rng_acq, fov_center) for p in PHASES[modality]}
    return fov_center, acq, motions


def _clean_phase(
    ph: Phantom, bio: Biology, acq: Acquisition, modality: str, k: int, motion: Motion
) -> sitk.Image:
    """The noise-free image of phase ``k`` (before the MR scale) on the phase's grid."""
    phase = PHASES[modality][k]
    cirrhosis = bool(bio.clinical["cirrhosis"])
    inten = render_intensity(ph, bio.hidden, modality, phase, acq.liver_enhancement[k], cirrhosis)
    inten = slice_profile_blur(inten, acq)
    bg = -1000.0 if modality == "CT" else 0.02
    return resample_to_phase(inten, ph, acq, motion, label=False, default=bg)


def _mr_noise(
    clean: sitk.Image, acq: Acquisition, k: int, rng_noise: np.random.Generator, bias: np.ndarray
) -> tuple[sitk.Image, np.ndarray]:
    """The scaled clean MR image and the written values ``round(Rician(clean * bias, sigma))``."""
    scale = acq.scale * acq.phase_gain[k]
    clean = clean * scale
    c = sitk.GetArrayViewFromImage(clean)
    sig = acq.noise * acq.scale
    n1 = rng_noise.normal(0.0, sig, c.shape).astype(np.float32)
    n2 = rng_noise.normal(0.0, sig, c.shape).astype(np.float32)
    noisy = np.sqrt((c * bias + n1) ** 2 + n2**2)
    return clean, np.clip(np.rint(noisy), 0, 32767).astype(np.int16)


def _ct_noise(clean: sitk.Image, acq: Acquisition, rng_noise: np.random.Generator) -> np.ndarray:
    """The written CT values: clean HU plus in-plane correlated noise."""
    c = sitk.GetArrayViewFromImage(clean)
    n = rng_noise.standard_normal(c.shape).astype(np.float32)
    n = ndimage.gaussian_filter(n, (0.0, 0.8, 0.8))  # in-plane correlated CT noise
    n *= np.float32(acq.noise / max(float(n.std()), 1e-6))
    return np.clip(np.rint(c + n), -1024, 3071).astype(np.int16)


def _render_phases(
    out: SynthPatient,
    ph: Phantom,
    bio: Biology,
    motions: Mapping[str, Motion],
    rng_noise: np.random.Generator,
) -> None:
    """Fill ``out``'s per-phase images, clean images, bias fields, masks, habitats and motions."""
    acq = out.acquisition
    assert acq is not None
    modality = out.modality
    packed = ph.packed_labels()
    bias = bias_field(rng_noise, acq) if modality == "MR" else None
    for k, phase in enumerate(out.phases):
        mo = motions[phase]
        clean = _clean_phase(ph, bio, acq, modality, k, mo)
        if modality == "MR":
            assert bias is not None
            clean, arr = _mr_noise(clean, acq, k, rng_noise, bias)
            b_img = sitk.GetImageFromArray(bias)
            b_img.CopyInformation(clean)
            out.bias[phase] = b_img
        else:
            arr = _ct_noise(clean, acq, rng_noise)
        img = sitk.GetImageFromArray(arr)
        img.CopyInformation(clean)
        out.images[phase] = img
        out.clean[phase] = clean
        lab = resample_to_phase(packed, ph, acq, mo, label=True)
        out.masks[phase] = decode_masks(lab)
        out.habitat[phase] = resample_to_phase(ph.habitat, ph, acq, mo, label=True)
        out.motion[phase] = mo


def generate_patient(
    modality: str,
    index: int,
    *,
    seed: int = 42,
    hidden_overrides: Mapping[str, float] | None = None,
    keep_phantom: bool = True,
    acquisition_overrides: Mapping[str, float] | None = None,
) -> SynthPatient:
    """Generate one patient in memory (no files).

    The result depends only on ``(seed, modality, index)`` (and the overrides): patient ``index`` is
    the same whatever the cohort size or the number of worker processes.

    Args:
        modality: ``"MR"`` (phases AP, PVP, HBP, DP) or ``"CT"`` (AP, PVP).
        index: 0-based patient index within the modality; the center is ``"ABCA"[index % 4]`` and
            the id e.g. ``AMR001`` (see :func:`hccrad.synth.biology.patient_id`).
        seed: cohort seed.
        hidden_overrides: optional values of the standard-normal latents (``aggressiveness``,
            ``mvi_latent_own``, ``prolif_latent``, ``sat_latent_own``) to generate the same patient
            with
            another biology (every other random draw is unchanged).
        keep_phantom: keep the 1 mm patient-frame :class:`Phantom` in the result.
        acquisition_overrides: optional :class:`~hccrad.synth.imaging.Scanner` fields to replace
            (e.g. ``{"pixel_mm": 1.0, "thickness_mm": 1.0}`` for an isotropic 1 mm acquisition,
            where the habitats are resolvable; ``noise``); every random draw is unchanged.

    Returns:
        A :class:`SynthPatient` with per-phase written images, clean images, bias fields (MR),
        masks,
        habitat maps and true motions, plus hidden variables and the clinical row.
    """
    bio = sample_patient_biology(modality, index, seed=seed, hidden_overrides=hidden_overrides)
    fov_center, acq, motions = _sample_geometry(seed, modality, index, acquisition_overrides)
    ph = build_phantom(
        _rng(seed, modality, index, "anatomy"),
        bio,
        fov_center,
        rng_repeat=_rng(seed, modality, index, "reader1_repeat"),
    )
    rng_noise = _rng(seed, modality, index, "noise")
    has_masks, has_r2 = mask_availability(index)
    out = SynthPatient(
        patient=patient_id(modality, index),
        center=center_of(index),
        modality=modality,
        index=index,
        phases=PHASES[modality],
        hidden=dict(bio.hidden),
        clinical=dict(bio.clinical),
        acquisition=acq,
        phantom=ph if keep_phantom else None,
        has_masks=has_masks,
        has_reader2=has_r2,
    )
    _render_phases(out, ph, bio, motions, rng_noise)
    out.measured = _measure(ph)
    return out


def _measure(ph: Phantom) -> dict[str, float]:
    """Habitat fractions of all tumors and the index lesion's 3D max diameter, on the phantom."""
    hab = ph.habitat[ph.tumor]
    n = max(int(hab.size), 1)
    zz, yy, xx = np.nonzero(ph.index_tumor)
    pts = np.stack([xx, yy, zz], 1).astype(np.float32)
    if len(pts) > 2000:  # the max diameter is attained on extreme points; subsample the surface
        surf = ph.index_tumor & ~ndimage.binary_erosion(ph.index_tumor)
        zz, yy, xx = np.nonzero(surf)
        pts = np.stack([xx, yy, zz], 1).astype(np.float32)
        pts = pts[:: max(1, len(pts) // 1500)]
    diam = 0.0
    for i in range(0, len(pts), 500):
        d = np.sqrt(((pts[i : i + 500, None, :] - pts[None, :, :]) ** 2).sum(-1))
        diam = max(diam, float(d.max()))
    return {
        "viable_fraction_measured": float((hab == Habitat.VIABLE).sum() / n),
        "intermediate_fraction_measured": float((hab == Habitat.INTERMEDIATE).sum() / n),
        "necrotic_fraction_measured": float((hab == Habitat.NECROTIC).sum() / n),
        "tumor_volume_ml": float(ph.tumor.sum() / 1000.0),
        "index_diameter_measured_mm": diam + 1.0,
        "n_satellites": float(ph.n_satellites),
    }


# ----------------------------------------------------------------------------------------------
# cohort on disk
# ----------------------------------------------------------------------------------------------


def _image_kind(center: str, opts: SynthOptions) -> str:
    if center == opts.dicom_center:
        return "dicom"
    if center == opts.nrrd_center:
        return "nrrd"
    return "nifti"


def _study(p: SynthPatient, scanner: Scanner, seed: int) -> dict[str, Any]:
    """Study-level DICOM values of a patient, with its fake identity (the "identity" stream)."""
    ident = identity(
        _rng(seed, p.modality, p.index, "identity"),
        p.patient,
        p.clinical["sex"],
        p.clinical["age"],
        p.clinical["acquisition_date"],
    )
    return {
        "identity": ident,
        "acquisition_date": p.clinical["acquisition_date"],
        "sex": p.clinical["sex"],
        "age": p.clinical["age"],
        "institution": scanner.institution,
        "vendor": scanner.vendor,
        "model": scanner.model,
        "field_strength": scanner.field_strength,
    }


def _write_phase(
    p: SynthPatient, k: int, kind: str, out: Path, seed: int, study: Mapping[str, Any]
) -> dict[str, Any]:
    """Write the image and masks of phase ``k``; return its ``cohort.tsv`` row."""
    phase = p.phases[k]
    if kind == "dicom":
        rel_img = f"images/{p.patient}/{phase}_dicom"
        write_dicom_series(
            p.images[phase],
            out / rel_img,
            modality=p.modality,
            phase=phase,
            seed=seed,
            patient=p.patient,
            series_number=k + 2,
            study=study,
        )
    else:
        rel_img = f"images/{p.patient}/{phase}.{'nrrd' if kind == 'nrrd' else 'nii.gz'}"
        write_image(p.images[phase], out / rel_img)
    row = {
        "center": p.center,
        "patient": p.patient,
        "phase": phase,
        "modality": p.modality,
        "image": rel_img,
        "tumor_mask": "",
        "liver_mask": "",
        "reader2_mask": "",
        "reader1_repeat_mask": "",
    }
    if p.has_masks:
        for key, col in (("tumor", "tumor_mask"), ("liver", "liver_mask")):
            rel = f"masks/{p.patient}/{phase}_{key}.nii.gz"
            write_image(p.masks[phase][key], out / rel)
            row[col] = rel
        if p.has_reader2:
            rel = f"masks/{p.patient}/{phase}_tumor_reader2.nii.gz"
            write_image(p.masks[phase]["tumor_reader2"], out / rel)
            row["reader2_mask"] = rel
            rel = f"masks/{p.patient}/{phase}_tumor_reader1_repeat.nii.gz"
            write_image(p.masks[phase]["tumor_reader1_repeat"], out / rel)
            row["reader1_repeat_mask"] = rel
    return row


def _truth_row(p: SynthPatient, kind: str) -> dict[str, Any]:
    """The patient's ``truth.tsv`` row (before the null columns)."""
    acq = p.acquisition
    assert acq is not None
    return {
        "patient": p.patient,
        "center": p.center,
        "modality": p.modality,
        "index": p.index,
        **{k: round(float(v), 6) for k, v in p.hidden.items()},
        **{k: round(float(v), 6) for k, v in p.measured.items()},
        **{f"{k}_true": p.clinical[k] for k in _TRUE_LABELS},
        "image_format": kind,
        "has_masks": int(p.has_masks),
        "has_reader2": int(p.has_reader2),
        "spacing_x_mm": acq.spacing[0],
        "spacing_y_mm": acq.spacing[1],
        "spacing_z_mm": acq.spacing[2],
        "size_x": acq.size[0],
        "size_y": acq.size[1],
        "size_z": acq.size[2],
        "mr_scale": round(acq.scale, 4),
        "noise": round(acq.noise, 4),
        "bias_amplitude": round(acq.bias_amplitude, 4),
    }


def _write_patient(args: tuple[SynthOptions, str, int, str]) -> dict[str, Any]:
    """Generate and write one patient; return its table rows (runs in a worker process)."""
    opts, modality, index, out_dir = args
    out = Path(out_dir)
    p = generate_patient(modality, index, seed=opts.seed, keep_phantom=False)
    kind = _image_kind(p.center, opts)
    scanner = SCANNERS[(p.center, modality)]
    study = _study(p, scanner, opts.seed)
    cohort_rows, motion_rows = [], []
    for k, phase in enumerate(p.phases):
        cohort_rows.append(_write_phase(p, k, kind, out, opts.seed, study))
        motion_rows.append({"patient": p.patient, "phase": phase, **p.motion[phase].as_row()})
    clinical = _clinical_record(p.patient, index, modality, p.clinical)
    truth = _truth_row(p, kind)
    return {"cohort": cohort_rows, "motion": motion_rows, "clinical": clinical, "truth": truth}


def _clinical_record(
    patient: str, index: int, modality: str, clinical: Mapping[str, Any]
) -> dict[str, Any]:
    """The patient's clinical-table row, keys in :data:`CLINICAL_COLUMNS` order: identity, the
    biology's values and the scanner's field strength (MR) and vendor."""
    center = center_of(index)
    scanner = SCANNERS[(center, modality)]
    row = {
        "patient": patient,
        "center": center,
        "modality": modality,
        **clinical,
        "field_strength": scanner.field_strength if modality == "MR" else None,
        "vendor": scanner.vendor,
    }
    return {c: row[c] for c in CLINICAL_COLUMNS}


def _init_worker() -> None:
    """One ITK thread per worker process (the workers already use every core)."""
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def null_permutation(seed: int, modality: str, n: int) -> np.ndarray:
    """The seeded permutation applied to labels + survival within a modality by ``null=True``:
    patient ``i`` receives the labels and survival of patient ``perm[i]``."""
    return np.random.default_rng([int(seed), MODALITY_CODE[modality], 7_777_777]).permutation(n)


def apply_null(rows: list[dict[str, Any]], seed: int, modality: str) -> list[dict[str, Any]]:
    """Permute :data:`~hccrad.synth.biology.NULL_PERMUTED_COLUMNS` jointly across ``rows``."""
    perm = null_permutation(seed, modality, len(rows))
    out = [dict(r) for r in rows]
    for i, j in enumerate(perm):
        for col in NULL_PERMUTED_COLUMNS:
            out[i][col] = rows[int(j)][col]
        out[i]["null_label_source"] = rows[int(j)]["patient"]
    return out


def clinical_tables(
    *, seed: int = 42, n_patients: int = 48, modality: str = "both", null: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Clinical and hidden-variable rows of a cohort without generating images (fast).

    The clinical rows equal those :func:`write_cohort` writes to ``clinical.tsv`` (same seed,
    same null permutation; keys :data:`CLINICAL_COLUMNS`); the hidden rows hold the latents and
    image-generating values (``truth.tsv``'s, with ``null_label_source`` when ``null``). Used for
    quick checks of the planted associations.

    Returns:
        ``(clinical_rows, hidden_rows)``, one dict per patient, MR patients first.
    """
    opts = SynthOptions(seed=seed, n_patients=n_patients, modality=modality, null=null)
    clinical, hidden = [], []
    for mod in opts.modalities:
        rows, hid = [], []
        for i in range(n_patients):
            b = sample_patient_biology(mod, i, seed=seed)
            pid = patient_id(mod, i)
            rows.append(_clinical_record(pid, i, mod, b.clinical))
            hid.append({"patient": pid, **b.hidden})
        if null:
            rows = apply_null(rows, seed, mod)
            for h, r in zip(hid, rows, strict=True):
                h["null_label_source"] = r.pop("null_label_source")
        clinical.extend(rows)
        hidden.extend(hid)
    return clinical, hidden


def _run_patients(
    jobs: list[tuple[SynthOptions, str, int, str]], n_workers: int
) -> list[dict[str, Any]]:
    """:func:`_write_patient` of every job, in ``n_workers`` processes (in order)."""
    if n_workers <= 1 or len(jobs) == 1:
        return [_write_patient(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=n_workers, initializer=_init_worker) as ex:
        return list(ex.map(_write_patient, jobs, chunksize=1))


def _clinical_and_truth(
    results: list[dict[str, Any]], opts: SynthOptions
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The clinical and truth rows, per modality, with the null permutation applied."""
    clinical_rows: list[dict[str, Any]] = []
    truth_rows: list[dict[str, Any]] = []
    for mod in opts.modalities:
        rows = [res["clinical"] for res in results if res["clinical"]["modality"] == mod]
        truths = [dict(res["truth"]) for res in results if res["truth"]["modality"] == mod]
        if opts.null:
            rows = apply_null(rows, opts.seed, mod)
            for t, r in zip(truths, rows, strict=True):
                t["null_label_source"] = r.pop("null_label_source")
        for t in truths:
            t["null"] = int(opts.null)
            t.setdefault("null_label_source", t["patient"])
        clinical_rows.extend(rows)
        truth_rows.extend(truths)
    return clinical_rows, truth_rows


def _write_manifest(out: Path, opts: SynthOptions, n_total: int) -> None:
    """Write ``synth.json`` (the settings) and ``README.md``."""
    manifest = {
        "generator": "hccrad.synth",
        "format_version": 1,
        **{k: v for k, v in asdict(opts).items() if k != "workers"},
        "n_patients_total": n_total,
        "fov_mm": list(FOV_MM),
        "phases": {m: list(PHASES[m]) for m in opts.modalities},
        "null_permuted_columns": list(NULL_PERMUTED_COLUMNS) if opts.null else [],
    }
    write_json(manifest, out / "synth.json")
    write_text(_readme(opts, n_total), out / "README.md")


def write_cohort(
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 42,
    n_patients: int = 48,
    modality: str = "both",
    null: bool = False,
    dicom_center: str | None = "B",
    nrrd_center: str | None = "C",
    workers: int | None = None,
) -> dict[str, Path]:
    """Generate the synthetic multi-center HCC cohort and write it under ``out_dir``.

    Layout (all sheet paths relative to ``out_dir``): ``images/{patient}/{phase}.nii.gz`` (or
    ``{phase}_dicom/`` for ``dicom_center``, ``{phase}.nrrd`` for ``nrrd_center``),
    ``masks/{patient}/{phase}_{tumor,liver,tumor_reader2,tumor_reader1_repeat}.nii.gz``,
    ``cohort.tsv``,
    ``clinical.tsv``, ``truth.tsv``, ``motion.tsv``, ``synth.json`` and ``README.md``.
    Outputs are byte-identical for the same arguments, whatever ``workers`` is.

    Args:
        out_dir: output folder (created).
        seed: cohort seed; patient ``i`` of a modality uses generators seeded
            ``[seed, modality_code, i, stream]``, so adding patients leaves earlier ones unchanged.
        n_patients: patients PER MODALITY (``both`` gives ``2 * n_patients`` distinct patients).
        modality: ``"MR"``, ``"CT"`` or ``"both"``.
        null: permute labels (grade_pd, mvi, early_recurrence, proliferative, tace_response) and the
            survival pairs jointly across patients within each modality (seeded); images unchanged.
        dicom_center: center written as DICOM series (None: no DICOM).
        nrrd_center: center written as NRRD (None: no NRRD).
        workers: worker processes (default ``min(2, cpu_count)``); 1 runs in-process.

    Returns:
        ``{"cohort": ..., "clinical": ..., "truth": ..., "motion": ...}`` paths.
    """
    opts = SynthOptions(
        seed=seed,
        n_patients=n_patients,
        modality=modality,
        null=null,
        dicom_center=dicom_center,
        nrrd_center=nrrd_center,
        workers=workers,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(opts, mod, i, str(out)) for mod in opts.modalities for i in range(n_patients)]
    n_workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    log.info("generating %d synthetic patients into %s (%d workers)", len(jobs), out, n_workers)
    results = _run_patients(jobs, n_workers)
    cohort_rows = [r for res in results for r in res["cohort"]]
    motion_rows = [r for res in results for r in res["motion"]]
    clinical_rows, truth_rows = _clinical_and_truth(results, opts)
    paths = {k: out / f"{k}.tsv" for k in ("cohort", "clinical", "truth", "motion")}
    write_tsv(paths["cohort"], COHORT_COLUMNS, cohort_rows)
    write_tsv(paths["clinical"], CLINICAL_COLUMNS, clinical_rows)
    write_tsv(paths["truth"], list(truth_rows[0].keys()), truth_rows)
    write_tsv(paths["motion"], MOTION_TSV_COLUMNS, motion_rows)
    _write_manifest(out, opts, len(jobs))
    log.info("synthetic cohort written: %s", ", ".join(str(p) for p in paths.values()))
    return paths


def _readme(opts: SynthOptions, n_total: int) -> str:
    null_line = (
        "**NULL cohort**: labels (grade_pd, mvi, early_recurrence, proliferative, tace_response) "
        "and "
        "the survival pairs were permuted jointly across patients within each modality (seeded); "
        "any model should perform at chance. truth.tsv column `null_label_source` names the "
        "patient whose labels each row received."
        if opts.null
        else "Labels and survival are the generated ones (null = false): the planted signal is "
        "present."
    )
    return (
        "# Synthetic HCC demo cohort (hccrad.synth)\n\n"
        f"seed {opts.seed}, {opts.n_patients} patients per modality ({opts.modality}; "
        f"{n_total} in total), DICOM center {opts.dicom_center}, "
        f"NRRD center {opts.nrrd_center}.\n\n"
        f"{null_line}\n\n"
        "Synthetic data, no real patient: the identifying DICOM tags are fake values planted for "
        "de-identification tests. Generating equations: docs/synthetic_cohort.md in hccrad.\n"
    )
