"""The cohort plan: who gets what, decided once from the settings, the cohort and the studies.

Every "which patients / which files" question the workflow's rules ask is answered here, so
that it is unit-tested without Snakemake and `hccrad validate` can print it.
``workflow/rules/common.smk`` builds one :class:`CohortPlan` at parse time and its input
functions are one-liners over it.

Conventions (docs/methods.md): a phase's mask of a kind is its own when the sheet gives one, else
the reference phase's, else another phase's (every phase shares the reference grid after
registration, so a mask drawn on any phase reaches every phase); the U-Net
predicts the liver and tumor masks that neither gives; a patient gets a deep-learning input when
it has the input's modality, every phase of it and a tumor on its first phase; habitats need the
configured modality, every habitat phase and a tumor on the first habitat phase. Every
radiomics patient is extracted with its modality's default parameter file; a study file that
names its own (``radiomics.params``) adds one extraction per patient of its modality for that
file, shared by every study that names the same file.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from hccrad import paths
from hccrad.config import DeepInputSpec, Settings, project_file
from hccrad.deep.train_config import PRETRAINED_KEY, STUDY_PRESETS, resolve_pretrained
from hccrad.errors import ConfigError
from hccrad.habitats import derive_seed
from hccrad.overlay import Change
from hccrad.sheets import Cohort
from hccrad.steps.keys import deep_key, mask_phase_order
from hccrad.studies import BlockSpec, StudySpec, study_dir, study_inputs, study_outputs

#: Mask kinds the U-Net predicts where the sheet gives none.
PREDICTED_KINDS = ("tumor", "liver")
#: Mask kinds a sheet may give per phase.
MASK_KINDS = ("tumor", "liver", "reader2", "reader1_repeat")


def segmentation_holdout(patient: str, seed: int, fraction: float) -> bool:
    """Whether a patient with masks is held out of U-Net training (for the Dice report).

    A stable per-patient draw (:func:`hccrad.habitats.derive_seed`), so adding patients never
    moves another patient between training and hold-out.
    """
    return derive_seed(seed, "segmentation-holdout", patient) / 2**32 < fraction


@dataclass(frozen=True)
class SegmentationSets:
    """The U-Net's patients: trained on, held out (Dice), and predicted (masks missing)."""

    train: tuple[str, ...]
    held_out: tuple[str, ...]
    predict: tuple[str, ...]


@dataclass(frozen=True)
class DeepModelInput:
    """The input a study's deep model reads: the spec and phase (None: one stacked tensor);
    ``phases`` for a per-phase bundle (one network per phase; ``phase`` is then its first)."""

    spec: DeepInputSpec
    phase: str | None
    phases: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Manifest key of the tensor (:func:`hccrad.steps.keys.deep_key`)."""
        return deep_key(self.spec.name, self.phase)

    @property
    def phase_keys(self) -> dict[str, str]:
        """Phase -> manifest key of a per-phase bundle's tensors; empty for one network."""
        return {ph: deep_key(self.spec.name, ph) for ph in self.phases}


@dataclass(frozen=True)
class RadiomicsParams:
    """The PyRadiomics parameter file a study's radiomics blocks read: its path as configured
    and its name (the file name without extension, naming its results folder
    ``radiomics/{name}/``), None for a modality's default file (today's paths)."""

    path: str
    name: str | None = None


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two configured paths (:func:`hccrad.config.project_file`) name one file."""
    return os.path.realpath(project_file(a)) == os.path.realpath(project_file(b))


def _taken(value: str, blocks: list[BlockSpec], part: str) -> bool:
    """Whether a block's ``part`` patterns (``phases``, ``regions``) take ``value``."""
    return any(fnmatch.fnmatchcase(value, pat) for b in blocks for pat in getattr(b, part))


class CohortPlan:
    """Answers every "who gets what" question of one run (cached: built once per process).

    Args:
        settings: The validated settings.
        cohort: The checked cohort sheet.
        studies: The loaded studies by name, in config order.
        clinical: Path of the clinical table (an input of every study).
    """

    def __init__(
        self,
        settings: Settings,
        cohort: Cohort,
        studies: Mapping[str, StudySpec],
        clinical: str | None = None,
    ) -> None:
        self.settings = settings
        self.cohort = cohort
        self.studies = dict(studies)
        self.clinical = str(settings.clinical if clinical is None else clinical)
        self._mask_source: dict[tuple[str, str, str], str | None] = {}
        self._params_patients: dict[str, tuple[str, ...]] = {}

    # ---- per patient --------------------------------------------------------------------------

    def reference_phase(self, patient: str) -> str:
        """The reference phase of the patient's modality (the registration target)."""
        return self.settings.modality(self.cohort.modality(patient)).reference_phase

    def mask_source_phase(self, patient: str, phase: str, kind: str) -> str | None:
        """Phase whose given mask of ``kind`` stands for ``phase`` after registration, or None:
        the phase's own when the sheet gives one, else the reference phase's, else the first
        other phase's in the modality's phase order (every phase shares the reference grid after
        registration, so a mask drawn on any phase reaches every phase)."""
        key = (patient, phase, kind)
        if key not in self._mask_source:
            modality = self.settings.modality(self.cohort.modality(patient))
            given = set(self.cohort.phases(patient))
            order = mask_phase_order(phase, modality.reference_phase, modality.phases)
            self._mask_source[key] = next(
                (
                    ph
                    for ph in order
                    if ph in given and self.cohort.record(patient, ph).mask(kind) is not None
                ),
                None,
            )
        return self._mask_source[key]

    def predicts_mask(self, patient: str, kind: str) -> bool:
        """Whether the U-Net's mask of ``kind`` stands in for a missing given one (all phases)."""
        if not self.settings.segmentation.enabled or kind not in PREDICTED_KINDS:
            return False
        return self.mask_source_phase(patient, self.reference_phase(patient), kind) is None

    def predicted_kinds(self, patient: str) -> tuple[str, ...]:
        """The mask kinds the U-Net predicts for the patient (empty for most patients)."""
        return tuple(k for k in PREDICTED_KINDS if self.predicts_mask(patient, k))

    def has_tumor(self, patient: str, phase: str) -> bool:
        """Whether a tumor mask (given, carried or predicted) stands for ``phase``."""
        return self.mask_source_phase(patient, phase, "tumor") is not None or self.predicts_mask(
            patient, "tumor"
        )

    def raw_inputs(self, patient: str) -> dict[str, str]:
        """Raw image (``image_{phase}``) and given masks (``{kind}_{phase}``) of every phase, as
        the sheet lists them."""
        inputs = {}
        for ph in self.cohort.phases(patient):
            rec = self.cohort.record(patient, ph)
            inputs[f"image_{ph}"] = str(rec.image)
            for kind in MASK_KINDS:
                mask = rec.mask(kind)
                if mask is not None:
                    inputs[f"{kind}_{ph}"] = str(mask)
        return inputs

    def raw_selections(self, patient: str) -> dict[str, dict[str, Any]]:
        """What the sheet selects within the raw files: ``{"series": {phase: series}, "segments":
        {phase: {kind: selection}}}`` (phases and kinds without a selection left out)."""
        series: dict[str, str] = {}
        segments: dict[str, dict[str, str]] = {}
        for ph in self.cohort.phases(patient):
            rec = self.cohort.record(patient, ph)
            if rec.series is not None:
                series[ph] = rec.series
            chosen = {k: rec.segment(k) for k in MASK_KINDS if rec.mask(k) and rec.segment(k)}
            if chosen:
                segments[ph] = chosen
        return {"series": series, "segments": segments}

    # ---- patient sets -------------------------------------------------------------------------

    @cached_property
    def segmented_patients(self) -> tuple[str, ...]:
        """Patients for whom the U-Net predicts a mask the sheet does not give."""
        return tuple(p for p in self.cohort.patients if self.predicted_kinds(p))

    @cached_property
    def segmentation(self) -> SegmentationSets:
        """The U-Net's training, held-out and to-predict patients. Given masks of both kinds on
        the reference phase (own or carried) make a patient usable for training or hold-out; a
        stable per-patient draw (:func:`segmentation_holdout`) holds some out."""
        seg = self.settings.segmentation
        if not seg.enabled:
            return SegmentationSets((), (), ())
        masked = [
            p
            for p in self.cohort.patients
            if all(self.mask_source_phase(p, self.reference_phase(p), k) for k in PREDICTED_KINDS)
        ]
        held = tuple(
            p for p in masked if segmentation_holdout(p, self.settings.seed, seg.holdout_fraction)
        )
        train = tuple(p for p in masked if p not in held)
        return SegmentationSets(train, held, self.segmented_patients)

    @cached_property
    def radiomics_patients(self) -> tuple[str, ...]:
        """Patients with a tumor mask on some phase (own, the reference phase's or predicted)."""
        return tuple(
            p
            for p in self.cohort.patients
            if any(self.has_tumor(p, ph) for ph in self.cohort.phases(p))
        )

    @cached_property
    def reader2_patients(self) -> tuple[str, ...]:
        """Patients with both readers' tumor masks on some phase (own or the reference
        phase's)."""
        return tuple(
            p
            for p in self.cohort.patients
            if any(
                self.has_tumor(p, ph) and self.mask_source_phase(p, ph, "reader2") is not None
                for ph in self.cohort.phases(p)
            )
        )

    @cached_property
    def reader1_repeat_patients(self) -> tuple[str, ...]:
        """Patients with reader 1's tumor mask and its repeat outline on some phase (own or the
        reference phase's): the intra-observer ICC's."""
        return tuple(
            p
            for p in self.cohort.patients
            if any(
                self.has_tumor(p, ph)
                and self.mask_source_phase(p, ph, "reader1_repeat") is not None
                for ph in self.cohort.phases(p)
            )
        )

    @cached_property
    def habitat_patients(self) -> tuple[str, ...]:
        """Patients whose habitats are computed: configured modality, every habitat phase
        acquired, and a tumor mask for the first habitat phase."""
        hab = self.settings.habitats
        if not hab.enabled:
            return ()
        return tuple(
            p
            for p in self.cohort.patients
            if self.cohort.modality(p) in hab.modalities
            and all(ph in self.cohort.phases(p) for ph in hab.phases)
            and self.has_tumor(p, hab.phases[0])
        )

    # ---- radiomics parameter files -----------------------------------------------------------

    def study_radiomics(self, study: str) -> RadiomicsParams:
        """The parameter file the study's radiomics blocks read: its own (``radiomics.params``)
        unless it is its modality's default or ``radiomics.study_params`` is off, else the
        modality's default (named None)."""
        return self._study_radiomics[study]

    @cached_property
    def _study_radiomics(self) -> dict[str, RadiomicsParams]:
        out = {}
        for study, spec in self.studies.items():
            default = str(self.settings.radiomics_params.get(spec.modality, ""))
            own = spec.radiomics_params
            if own is None or not self.settings.radiomics_study_params or same_file(own, default):
                out[study] = RadiomicsParams(default)
            else:
                out[study] = RadiomicsParams(str(own), Path(own).stem)
        return out

    @cached_property
    def radiomics_param_files(self) -> dict[str, str]:
        """``{name: path}`` of the studies' own parameter files that a runnable study reads (a
        modality's default is not one of them), in config order.

        Raises:
            ConfigError: two different files share a name (their results folders would clash).
        """
        files: dict[str, str] = {}
        first: dict[str, str] = {}
        for study in self.runnable_studies:
            own = self.study_radiomics(study)
            if own.name is None or not self.studies[study].reads_radiomics:
                continue
            known = files.setdefault(own.name, own.path)
            first.setdefault(own.name, study)
            if not same_file(known, own.path):
                raise ConfigError(
                    f"studies {first[own.name]} and {study}: radiomics.params {known} and "
                    f"{own.path} are two files of one name (both would write "
                    f"radiomics/{own.name}/); rename one"
                )
        return files

    def _param_studies(self, name: str) -> list[str]:
        if name not in self.radiomics_param_files:
            raise ValueError(f"no study reads a radiomics parameter file named {name!r}")
        return [s for s in self.runnable_studies if self.study_radiomics(s).name == name]

    def _param_blocks(self, name: str) -> list[BlockSpec]:
        """The radiomics blocks of the runnable studies that read the file ``name``."""
        return [
            b
            for s in self._param_studies(name)
            for b in (self.studies[s].blocks[x] for x in self.studies[s].used_blocks)
            if b.source == "radiomics"
        ]

    def radiomics_params_phases(self, patient: str, name: str) -> tuple[str, ...]:
        """The patient's phases that a study reading the file ``name`` takes (its radiomics
        blocks' ``phases`` patterns): only those are extracted with it."""
        blocks = self._param_blocks(name)
        return tuple(ph for ph in self.cohort.phases(patient) if _taken(ph, blocks, "phases"))

    def radiomics_params_regions(self, name: str) -> tuple[str, ...]:
        """The configured regions (``radiomics.regions``) that a study reading the file ``name``
        takes; all of them when its blocks take none (the study then names the empty block)."""
        blocks = self._param_blocks(name)
        regions = self.settings.radiomics_regions
        return tuple(r for r in regions if _taken(r, blocks, "regions")) or regions

    def radiomics_params_patients(self, name: str) -> tuple[str, ...]:
        """Radiomics patients extracted with the studies' parameter file ``name``: those of the
        modalities of the runnable studies that read it, with a tumor on a phase they take."""
        if name not in self._params_patients:
            modalities = {self.studies[s].modality for s in self._param_studies(name)}
            self._params_patients[name] = tuple(
                p
                for p in self.radiomics_patients
                if self.cohort.modality(p) in modalities
                and any(self.has_tumor(p, ph) for ph in self.radiomics_params_phases(p, name))
            )
        return self._params_patients[name]

    def radiomics_params_icc_patients(self, name: str) -> tuple[str, ...]:
        """Second-reader patients of the file ``name``'s reader-ICC table: its patients with a
        second reader when a study reading it has an ICC step, else none (no table)."""
        if not any(self.studies[s].uses_icc for s in self._param_studies(name)):
            return ()
        reader2 = set(self.reader2_patients)
        return tuple(p for p in self.radiomics_params_patients(name) if p in reader2)

    def radiomics_params_intra_patients(self, name: str) -> tuple[str, ...]:
        """Repeat-outline patients of the file ``name``'s intra-observer ICC table: its patients
        with reader 1's repeat when a study reading it has an ICC step with ``intra``, else none
        (no table)."""
        if not any(self.studies[s].uses_icc_intra for s in self._param_studies(name)):
            return ()
        repeat = set(self.reader1_repeat_patients)
        return tuple(p for p in self.radiomics_params_patients(name) if p in repeat)

    def patient_radiomics_params(self, patient: str) -> list[str]:
        """Names of the studies' own parameter files the patient is extracted with (besides
        its modality's default, which every radiomics patient gets)."""
        return [
            name
            for name in self.radiomics_param_files
            if patient in self.radiomics_params_patients(name)
        ]

    def radiomics_json(self, patient: str, params: str | None = None) -> str:
        """The patient's extraction: ``results/{center}/{patient}/radiomics/features.json``
        (its modality's default file), ``.../radiomics/{params}/features.json`` (a study's)."""
        name = "features.json" if params is None else f"{params}/features.json"
        return self.patient_file(patient, "radiomics", name)

    # ---- deep-learning inputs -----------------------------------------------------------------

    def _gets_deep_input(self, patient: str, spec: DeepInputSpec) -> bool:
        return (
            self.cohort.modality(patient) in spec.modalities
            and all(ph in self.cohort.phases(patient) for ph in spec.phases)
            and self.has_tumor(patient, spec.phases[0])
        )

    def patient_deep_inputs(self, patient: str) -> list[DeepInputSpec]:
        """The per-region deep inputs the patient's normalisation job builds."""
        return [
            spec
            for spec in self.settings.deep.active_inputs.values()
            if not spec.per_subregion and self._gets_deep_input(patient, spec)
        ]

    def habitat_deep_inputs(self, patient: str) -> list[DeepInputSpec]:
        """The per-subregion (``region: habitats``) deep inputs assign_habitats builds."""
        return [
            spec
            for spec in self.settings.deep.active_inputs.values()
            if spec.per_subregion and self._gets_deep_input(patient, spec)
        ]

    def deep_input_patients(self, spec: DeepInputSpec) -> list[str]:
        """Patients that get input ``spec``."""
        if spec.per_subregion:
            habitat = set(self.habitat_patients)
            return [
                p for p in self.cohort.patients if p in habitat and self._gets_deep_input(p, spec)
            ]
        return [p for p in self.cohort.patients if self._gets_deep_input(p, spec)]

    # ---- studies ------------------------------------------------------------------------------

    def study_patients(self, study: str) -> dict[str, str]:
        """``{patient: modality}`` of the cohort patients of the study's modality."""
        modality = self.studies[study].modality
        return {p: modality for p in self.cohort.patients if self.cohort.modality(p) == modality}

    def study_override(self, study: str) -> dict[str, Any]:
        """The configuration overlay's delta for a study (empty without one): a param of the
        study's jobs, which load the study file with it."""
        overlay = self.settings.overlay
        return overlay.study(study) if overlay is not None else {}

    def study_tables(self, study: str) -> dict[str, str]:
        """The tables a study reads (:func:`hccrad.studies.study_inputs`); the radiomics and
        reader-ICC tables of its parameter file (:meth:`study_radiomics`)."""
        return study_inputs(self.studies[study], self.clinical, self.study_radiomics(study).name)

    @cached_property
    def skipped_studies(self) -> dict[str, str]:
        """``{study: why it cannot run on this cohort}`` for the configured studies that can't."""
        skipped = {}
        for study, spec in self.studies.items():
            needs = self.study_tables(study)
            if not self.study_patients(study):
                skipped[study] = f"no {spec.modality} patient in the cohort"
            elif (lacking := self._label_problem(study)) is not None:
                skipped[study] = lacking
            elif "habitats" in needs and not self.habitat_patients:
                skipped[study] = "it needs habitat features and no patient gets habitats"
            elif "reader_icc" in needs and not self._has_outline(study, self.reader2_patients):
                skipped[study] = "its ICC filter needs second-reader masks and the cohort has none"
            elif "reader_icc_intra" in needs and not self._has_outline(
                study, self.reader1_repeat_patients
            ):
                skipped[study] = (
                    "its intra-observer ICC filter needs reader 1's repeat masks "
                    "(reader1_repeat_mask) and the cohort has none; without them set "
                    "intra: false on the study's icc step (inter-reader ICC only)"
                )
        return skipped

    def _label_problem(self, study: str) -> str | None:
        """Why the clinical table cannot label the study's patients (its label column absent, or
        empty for every patient of its modality), or None. A label the study derives
        (``derived:``) is checked by the study's own run."""
        spec = self.studies[study]
        if spec.label in spec.derived:
            return None
        clinical = self.cohort.clinical
        if spec.label not in clinical.columns:
            return (
                f"the clinical table ({self.clinical}) has no column {spec.label!r}, the study's "
                "label"
            )
        patients = set(self.study_patients(study))
        rows = clinical[clinical["patient"].isin(patients)] if "patient" in clinical else clinical
        values = rows[spec.label]
        text = values.astype(str).str.strip().str.lower()
        if not (values.notna() & ~text.isin({"", "nan", "none"})).any():
            return (
                f"the clinical table ({self.clinical}) has no value of {spec.label!r}, the "
                f"study's label, for any {spec.modality} patient"
            )
        return None

    def _has_outline(self, study: str, patients: tuple[str, ...]) -> bool:
        """Whether the study's ICC table of a second outline (``patients``: those with it) has
        patients: any for the modalities' default table (one for the cohort), one of the
        study's modality for a table of its own parameter file."""
        if self.study_radiomics(study).name is None:
            return bool(patients)
        modality = self.studies[study].modality
        return any(self.cohort.modality(p) == modality for p in patients)

    @property
    def runnable_studies(self) -> list[str]:
        """The configured studies that run on this cohort, in config order."""
        return [s for s in self.studies if s not in self.skipped_studies]

    @cached_property
    def habitat_studies(self) -> list[str]:
        """The runnable studies that read the subregions: their habitat feature table, or a deep
        model on a per-subregion input. The cohort's k and reference habitats are fitted on the
        patients every one of them trains on (``select_habitat_k``); none: on every patient."""
        if not self.habitat_patients:
            return []
        return [
            study
            for study in self.runnable_studies
            if "habitats" in self.study_tables(study)
            or any(
                self.deep_model_input(study, model).spec.per_subregion
                for model in self.deep_models(study)
            )
        ]

    def study_outputs(self, study: str) -> dict[str, str]:
        """The files ``run_study_{study}`` writes, by output name, under the study folder."""
        folder = study_dir(study)
        return {k: f"{folder}/{name}" for k, name in study_outputs(self.studies[study]).items()}

    def deep_model_spec(self, study: str, model: str) -> dict[str, Any]:
        """The configured mapping of a study's deep model (the training job's ``spec``)."""
        spec = self.studies[study].deep_models.get(model)
        if spec is None:
            raise ValueError(f"study {study}: no deep model {model!r}")
        return spec.raw

    def deep_model_weights(self, study: str, model: str) -> str | None:
        """The local pretrained-weights file a study's deep model starts from (an input of its
        training job, so that replacing the file retrains), None for random initialisation.

        Raises:
            ConfigError: the configured file does not exist (named with the study and model).
        """
        spec = self.deep_model_spec(study, model)
        train = {**STUDY_PRESETS.get(spec.get("preset", ""), {}), **spec.get("train", {})}
        if not train.get("pretrained"):
            return None
        key = f"study {study}: deep_models.{model}.{PRETRAINED_KEY}"
        return str(resolve_pretrained(train["pretrained"], key))

    def deep_models(self, study: str) -> list[str]:
        """The study's deep models, in config order."""
        return list(self.studies[study].deep_models)

    def deep_model_input(self, study: str, model: str) -> DeepModelInput:
        """The input a study's deep model reads."""
        spec = self.studies[study].deep_models.get(model)
        if spec is None:
            raise ValueError(f"study {study}: no deep model {model!r}")
        inp = self.settings.deep.active_inputs.get(spec.input)
        where = f"study {study}, deep model {model}"
        if inp is None:
            raise ValueError(f"{where}: input {spec.input!r} is not in deep.inputs")
        if inp.per_subregion and spec.mil:
            raise ValueError(
                f"{where}: MIL features need a per-region input, not the per-subregion "
                f"{spec.input!r}"
            )
        wanted = spec.phases or ((spec.phase,) if spec.phase else ())
        if wanted and not inp.per_phase:
            raise ValueError(
                f"{where}: input {spec.input!r} stacks its phases (builder {inp.builder}); "
                "phase / phases need a per-phase input"
            )
        missing = [ph for ph in wanted if ph not in inp.phases]
        if missing:
            raise ValueError(
                f"{where}: phases {missing} are not built for input {spec.input!r} "
                f"(deep.inputs.{spec.input}.phases: {list(inp.phases)})"
            )
        if spec.phases:
            if inp.per_subregion or spec.mil:
                raise ValueError(
                    f"{where}: one network per phase (phases) takes a per-region input without "
                    "MIL features"
                )
            return DeepModelInput(inp, spec.phases[0], tuple(spec.phases))
        return DeepModelInput(inp, (spec.phase or inp.phases[0]) if inp.per_phase else None)

    def deep_model_patients(self, study: str, model: str) -> list[str]:
        """The study's patients that have the model's input."""
        inp = self.deep_model_input(study, model).spec
        modality = self.studies[study].modality
        return [p for p in self.deep_input_patients(inp) if self.cohort.modality(p) == modality]

    def trained_deep_models(self) -> list[tuple[str, str]]:
        """``(study, model)`` of every deep model of a runnable study that has patients."""
        return [
            (study, model)
            for study in self.runnable_studies
            for model in self.deep_models(study)
            if self.deep_model_patients(study, model)
        ]

    # ---- per-patient files --------------------------------------------------------------------

    def patient_file(self, patient: str, stage: str, name: str) -> str:
        """``results/{center}/{patient}/{stage}/{name}`` of a patient."""
        return paths.patient_path(stage, name, center=self.cohort.center(patient), patient=patient)

    def predicted_mask(self, patient: str, kind: str) -> str:
        """The U-Net's mask of ``kind`` on the patient's reference phase."""
        return paths.image_path(
            "segment",
            f"{kind}.nii.gz",
            center=self.cohort.center(patient),
            patient=patient,
            phase=self.reference_phase(patient),
        )

    # ---- overlay ------------------------------------------------------------------------------

    def overlay_summary(self) -> dict[str, Any] | None:
        """The run's configuration overlay as plain data (``path``, ``reason``, ``changes``: one
        row per changed value, the configuration's first, then each study's), or None."""
        overlay = self.settings.overlay
        if overlay is None:
            return None
        changes = [*self.settings.overlay_changes]
        for spec in self.studies.values():
            changes += spec.overlay_changes
        changes += self._set_aside_radiomics_params()
        return {
            "path": overlay.path,
            "reason": overlay.reason,
            "changes": [c.as_row() for c in changes],
        }

    def _set_aside_radiomics_params(self) -> list[Change]:
        """When the overlay turns ``radiomics.study_params`` off: one change per study whose
        own parameter file it sets aside (the file this run reads instead)."""
        if not any(c.key == "radiomics.study_params" for c in self.settings.overlay_changes):
            return []
        out = []
        for study, spec in self.studies.items():
            own, used = spec.radiomics_params, self.study_radiomics(study).path
            if own is not None and spec.reads_radiomics and not same_file(own, used):
                out.append(Change(study, "radiomics.params", own, used))
        return out

    # ---- summary ------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Patients per stage and the skipped studies, for `hccrad validate`."""
        seg = self.segmentation
        patients = self.cohort.patients
        return {
            "patients": len(patients),
            "images": sum(len(self.cohort.phases(p)) for p in patients),
            "preprocessed in one job": len(patients) - len(self.segmented_patients),
            "segmented by the U-Net": len(seg.predict),
            "U-Net training / held out": f"{len(seg.train)} / {len(seg.held_out)}",
            "radiomics": len(self.radiomics_patients),
            "radiomics, studies' own parameter files": {
                name: len(self.radiomics_params_patients(name))
                for name in self.radiomics_param_files
            },
            "second reader (ICC)": len(self.reader2_patients),
            "reader 1 repeat (intra-observer ICC)": len(self.reader1_repeat_patients),
            "habitats": len(self.habitat_patients),
            "deep inputs": {
                name: len(self.deep_input_patients(spec))
                for name, spec in self.settings.deep.active_inputs.items()
            },
            "studies": {s: len(self.study_patients(s)) for s in self.runnable_studies},
            "deep models": {
                f"{s}/{m}": len(self.deep_model_patients(s, m))
                for s, m in self.trained_deep_models()
            },
            "skipped studies": dict(self.skipped_studies),
        }
