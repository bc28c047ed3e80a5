"""Typed, validated workflow configuration.

The configuration is validated against ``workflow/schemas/config.schema.yaml`` (defaults filled in),
then exposed as frozen dataclasses so that code never digs through nested dictionaries.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from hccrad.errors import ConfigError
from hccrad.overlay import Change, Overlay, changes, deep_merge, parse_overlay

#: Center names that would collide with the workflow's own folders under ``results/``.
RESERVED_NAMES = frozenset({"cohort", "logs", "benchmarks", "qc"})

#: The five seed studies (``config/studies/{name}.yaml``), in MISSION.md order.
SEED_STUDIES = ("habitat_grade", "mvi_biregional", "er_fusion", "mil_er", "proliferative_tace")
#: Study files run when the configuration names none (config key ``studies``).
DEFAULT_STUDY_FILES = tuple(f"config/studies/{name}.yaml" for name in SEED_STUDIES)

#: Modality settings used when the configuration names no ``modalities`` at all.
DEFAULT_MODALITIES: dict[str, dict[str, Any]] = {
    "MR": {
        "phases": ["AP", "PVP", "HBP", "DP"],
        "reference_phase": "AP",
        "n4": True,
        "normalization": {"method": "zscore", "scale": 100.0, "percentiles": [1.0, 99.0]},
    },
    "CT": {
        "phases": ["AP", "PVP"],
        "reference_phase": "AP",
        "n4": False,
        "normalization": {
            "method": "window",
            "window_width": 259.0,
            "window_level": 40.0,
            "rescale": True,
        },
    },
}


def schema_dir() -> Path:
    """Folder of the workflow's JSON schemas (``workflow/schemas`` of this checkout)."""
    here = Path(__file__).resolve().parents[2] / "schemas"
    if not here.is_dir():
        raise ConfigError(
            f"schema folder {here} not found: hccrad must be installed from a checkout "
            "of the workflow (pip install -e .)"
        )
    return here


def project_file(path: str | Path, root: str | Path | None = None) -> str:
    """A file named in the configuration: as given when it is absolute or exists from the
    working directory, else relative to the workflow's folder ``root`` (default: this checkout),
    so that shipped presets (``config/studies/*.yaml``) work from any working directory."""
    if os.path.isabs(path) or os.path.exists(path):
        return str(path)
    return os.path.join(str(root) if root is not None else str(schema_dir().parents[1]), path)


# libyaml's loader when PyYAML was built with it (about 10x faster; the same YAML 1.1 rules):
# every Snakemake job on a cluster parses the workflow, and with it the config and study files.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(stream: Any) -> Any:
    """``yaml.safe_load`` with the C loader when available."""
    return yaml.load(stream, Loader=_YAML_LOADER)  # a safe loader: CSafeLoader or SafeLoader


def load_schema(name: str) -> dict[str, Any]:
    """Load ``workflow/schemas/{name}.schema.yaml``."""
    with open(schema_dir() / f"{name}.schema.yaml") as fh:
        return read_yaml(fh)


def _validator_with_defaults(schema: dict[str, Any]) -> Any:
    """A Draft 2020-12 validator that also fills in ``default`` values (as Snakemake's does)."""
    from jsonschema import Draft202012Validator, validators

    validate_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: dict, instance: Any, schema: dict) -> Any:
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub:
                    instance.setdefault(prop, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    cls = validators.extend(Draft202012Validator, {"properties": set_defaults})
    return cls(schema)


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a configuration dictionary and return a copy with defaults filled in.

    Raises:
        ConfigError: naming every offending key path and what is wrong with it.
    """
    data = copy.deepcopy(dict(config))
    data.setdefault("modalities", copy.deepcopy(DEFAULT_MODALITIES))
    validator = _validator_with_defaults(load_schema("config"))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [
            f"  config key {'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}"
            for e in errors
        ]
        raise ConfigError("invalid configuration:\n" + "\n".join(lines))
    for name, mod in data["modalities"].items():
        if mod["reference_phase"] not in mod["phases"]:
            raise ConfigError(
                f"config key modalities.{name}.reference_phase: {mod['reference_phase']!r} "
                f"is not one of the modality's phases {mod['phases']}"
            )
        for key in ("params", "image_stage"):
            if name not in data["radiomics"][key]:
                raise ConfigError(f"config key radiomics.{key}: no entry for modality {name}")
        bad = RESERVED_NAMES.intersection(mod["phases"])
        if bad:
            raise ConfigError(
                f"config key modalities.{name}.phases: reserved name(s) {sorted(bad)}"
            )
    hab = data["habitats"]
    if hab["enabled"]:
        for name in hab["modalities"]:
            mod = data["modalities"].get(name)
            if mod is None:
                raise ConfigError(f"config key habitats.modalities: unknown modality {name!r}")
            missing = [p for p in hab["phases"] if p not in mod["phases"]]
            if missing:
                raise ConfigError(
                    f"config key habitats.phases: {missing} not among the phases of {name} "
                    f"{mod['phases']}"
                )
        lo, hi = hab["k_range"]
        if lo > hi:
            raise ConfigError(f"config key habitats.k_range: {lo} > {hi}")
    for name, spec in data["deep"]["inputs"].items():
        if not name.replace("_", "").isalnum():
            raise ConfigError(f"config key deep.inputs.{name}: names are letters, digits and _")
        for mod_name in spec["modalities"]:
            mod = data["modalities"].get(mod_name)
            if mod is None:
                raise ConfigError(
                    f"config key deep.inputs.{name}.modalities: unknown modality {mod_name!r}"
                )
            missing = [p for p in spec["phases"] if p not in mod["phases"]]
            if missing:
                raise ConfigError(
                    f"config key deep.inputs.{name}.phases: {missing} not among the phases of "
                    f"{mod_name} {mod['phases']}"
                )
        # (with habitats disabled, or a modality outside habitats.modalities, a region-habitats
        # input simply has no patients, as an input of an absent modality: no error, so that a
        # config overlay can switch habitats off without editing deep.inputs)
        if spec["region"] == "habitats" and spec["builder"] == "multiphase":
            raise ConfigError(
                f"config key deep.inputs.{name}: region habitats takes the slices or cube "
                "builder (one tensor per phase and subregion)"
            )
    return data


@dataclass(frozen=True)
class Habitats:
    """Voxel-map and habitat-clustering settings (config key ``habitats``)."""

    enabled: bool
    modalities: tuple[str, ...]
    phases: tuple[str, ...]
    spacing: float
    kernel_radius: int
    bin_width: float
    bin_count: int | None
    classes: tuple[str, ...]
    engine: str
    features: str | tuple[str, ...]
    k_range: tuple[int, int]
    k: int | None
    order_by: str | None
    reference: str | None
    silhouette_sample: int
    n_init: int


@dataclass(frozen=True)
class DeepInputSpec:
    """One named per-patient input tensor (config key ``deep.inputs.<name>``)."""

    name: str
    builder: str
    modalities: tuple[str, ...]
    phases: tuple[str, ...]
    region: str
    size: int
    neighbours: int = 2
    offsets: tuple[int, ...] | None = None
    k: int = 3
    margin_mm: float = 10.0
    mask_to_region: bool = False
    window: tuple[float, float] | None = None  # intensity clip [lo, hi] -> [0, 1]

    @property
    def per_phase(self) -> bool:
        """One tensor per phase (slices, cube) rather than one stacked over phases."""
        return self.builder != "multiphase"

    @property
    def per_subregion(self) -> bool:
        """One tensor per habitat subregion (built by ``assign_habitats``), not per region."""
        return self.region == "habitats"

    def as_param(self) -> dict[str, Any]:
        """Plain data of this spec, for a rule's ``params`` (Snakemake compares them between runs
        only when they are built-in types; :meth:`from_param` reads them back in the job)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_param(cls, data: Mapping[str, Any]) -> DeepInputSpec:
        """The spec of :meth:`as_param`'s data."""
        d = dict(data)
        d["modalities"] = tuple(d["modalities"])
        d["phases"] = tuple(d["phases"])
        if d.get("offsets") is not None:
            d["offsets"] = tuple(d["offsets"])
        if d.get("window") is not None:
            d["window"] = (float(d["window"][0]), float(d["window"][1]))
        return cls(**d)


@dataclass(frozen=True)
class Normalization:
    """Intensity normalisation of one modality (applied in the registered space)."""

    method: str
    percentiles: tuple[float, float] = (1.0, 99.0)
    scale: float = 1.0
    window_width: float = 259.0
    window_level: float = 40.0
    rescale: bool = True

    @property
    def unit_scale(self) -> float:
        """Divisor that brings normalised intensities to unit scale (deep-learning inputs):
        ``scale`` for zscore/percentile (z x scale -> z), 1 for a rescaled window ([0, 1]), the
        window width otherwise, 1 without normalisation."""
        if self.method in ("zscore", "percentile"):
            return float(self.scale)
        if self.method == "window":
            return 1.0 if self.rescale else float(self.window_width)
        return 1.0

    def as_param(self) -> dict[str, Any]:
        """Plain data of these settings, for a rule's ``params`` (see
        :meth:`DeepInputSpec.as_param`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_param(cls, data: Mapping[str, Any]) -> Normalization:
        """The settings of :meth:`as_param`'s data."""
        d = dict(data)
        d["percentiles"] = tuple(d["percentiles"])
        return cls(**d)


@dataclass(frozen=True)
class Modality:
    """Phases, reference phase and intensity handling of one modality."""

    name: str
    phases: tuple[str, ...]
    reference_phase: str
    n4: bool
    normalization: Normalization


@dataclass(frozen=True)
class Audit:
    """Settings of the reproducibility and privacy audit (config key ``audit``)."""

    drift_threshold: float = 0.5
    icc_thresholds: tuple[float, ...] = (0.75, 0.9)
    truth: str | None = None
    fail_on_identifiers: bool = True


@dataclass(frozen=True)
class Segmentation:
    """The 3-D U-Net that predicts missing liver and tumor masks (config key ``segmentation``)."""

    enabled: bool = True
    holdout_fraction: float = 0.2
    checkpoint: str | None = None
    threads: int = 2
    train: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Deep:
    """Deep-learning inputs and jobs (config key ``deep``)."""

    enabled: bool = True
    train_gpus: int = 1
    threads: int = 2
    inputs: dict[str, DeepInputSpec] = field(default_factory=dict)

    @property
    def active_inputs(self) -> dict[str, DeepInputSpec]:
        """The inputs that are built: all of them when deep learning is enabled, else none."""
        return self.inputs if self.enabled else {}


@dataclass(frozen=True)
class Resampling:
    """How images and masks are resampled (config ``resample``): the grid anchored at the
    original's first voxel (``origin``, the default) or centred on the original grid
    (``centre``, IBSI-1), the image interpolator, the masks' partial-volume threshold after
    linear interpolation (None, the default: nearest neighbour) and whether CT intensities are
    rounded to integer HU after each interpolation. :attr:`IBSI` is IBSI-1's image processing
    (docs/ibsi1.md)."""

    #: IBSI-1's image processing: centred grid, masks at 0.5 after linear interpolation, CT in
    #: integer HU.
    IBSI: ClassVar[Resampling]

    grid: str = "origin"
    interpolation: str = "linear"
    mask_threshold: float | None = None
    round_ct: bool = False

    def as_param(self) -> list[Any]:
        """Plain data for a rule's ``params`` (:meth:`from_param` reads it back)."""
        return [self.grid, self.interpolation, self.mask_threshold, self.round_ct]

    @classmethod
    def from_param(cls, data: Sequence[Any]) -> Resampling:
        grid, interpolation, threshold, round_ct = data
        return cls(
            grid=str(grid),
            interpolation=str(interpolation),
            mask_threshold=None if threshold is None else float(threshold),
            round_ct=bool(round_ct),
        )


Resampling.IBSI = Resampling(grid="centre", mask_threshold=0.5, round_ct=True)


@dataclass(frozen=True)
class PreprocessSettings:
    """What one patient's preprocessing job uses, rebuilt in the job from the rule's ``params``
    (:func:`preprocess_params`), so that every value it uses is one whose change reruns it.

    Attribute names are those of :class:`Settings`, so the preprocessing functions take either.
    """

    # registration (register_patient, preprocess_patient; None in a normalize_patient job)
    spacing: tuple[float, float, float] | None = None
    n4_shrink_factor: int | None = None
    n4_iterations: tuple[int, ...] | None = None
    n4_convergence_threshold: float | None = None
    n4_spline_distance_mm: float | None = None
    registration_method: str | None = None
    registration_refine: bool | None = None
    seed: int | None = None
    keep_intermediates: bool | None = None
    resampling: Resampling | None = None
    # normalisation (normalize_patient, preprocess_patient)
    ring_distance_mm: float = 10.0
    ring_clip_to_liver: bool = True
    modalities: dict[str, Modality] = field(default_factory=dict)

    def modality(self, name: str) -> Modality:
        """The patient's modality (the only one these settings know)."""
        try:
            return self.modalities[name]
        except KeyError:
            raise ConfigError(f"modality {name!r} is not among the job's params") from None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PreprocessSettings:
        """Settings from the ``params`` of ``preprocess_patient``, ``register_patient`` or
        ``normalize_patient``: the registration keys of :func:`register_params` where the job
        registers, the ring and modality keys where it normalises (each job gets only what it
        uses; the other fields stay None)."""
        out: dict[str, Any] = {}
        if "n4_settings" in params:
            shrink, iterations, threshold, spline = params["n4_settings"]
            out.update(
                spacing=_triple(params["spacing"]),
                n4_shrink_factor=int(shrink),
                n4_iterations=tuple(iterations),
                n4_convergence_threshold=float(threshold),
                n4_spline_distance_mm=float(spline),
                registration_method=params["method"],
                registration_refine=bool(params["refine"]),
                seed=int(params["seed"]),
                keep_intermediates=bool(params["keep_intermediates"]),
                resampling=Resampling.from_param(params["resampling"]),
            )
        if "normalization" in params:
            ring = params["ring"]
            out.update(
                ring_distance_mm=float(ring[0]),
                ring_clip_to_liver=bool(ring[1]),
                modalities={
                    params["modality"]: Modality(
                        name=params["modality"],
                        phases=tuple(params["phases"]),
                        reference_phase=params["reference"],
                        n4=bool(params.get("n4", False)),
                        normalization=Normalization.from_param(params["normalization"]),
                    )
                },
            )
        return cls(**out)


@dataclass(frozen=True)
class Settings:
    """The resolved configuration of one run."""

    cohort: Path
    clinical: Path
    seed: int
    sheet_errors: str
    keep_intermediates: bool
    modalities: dict[str, Modality]
    spacing: tuple[float, float, float]
    n4_shrink_factor: int
    n4_iterations: tuple[int, ...]
    n4_convergence_threshold: float
    n4_spline_distance_mm: float
    registration_method: str
    registration_refine: bool
    ring_distance_mm: float
    ring_clip_to_liver: bool
    montage_per_row: int
    radiomics_params: dict[str, Path]
    radiomics_stage: dict[str, str]
    radiomics_regions: tuple[str, ...]
    #: Whether the studies' own radiomics parameter files are used (``radiomics.study_params``);
    #: False: every study reads its modality's default (``radiomics_params``).
    radiomics_study_params: bool
    habitats: Habitats
    deep: Deep
    segmentation: Segmentation
    #: Study files (config key ``studies``; :data:`DEFAULT_STUDY_FILES` when not given).
    studies: tuple[str, ...] = DEFAULT_STUDY_FILES
    audit: Audit = Audit()
    #: The overlay applied to this run (config key ``overlay``), or None.
    overlay: Overlay | None = None
    #: The configuration values the overlay changed (full scale -> this run).
    overlay_changes: tuple[Change, ...] = ()
    #: How images and masks are resampled (``resample`` without its spacing).
    resampling: Resampling = Resampling()

    def modality(self, name: str) -> Modality:
        """Settings of modality ``name``; ConfigError when the config does not define it."""
        try:
            return self.modalities[name]
        except KeyError:
            raise ConfigError(
                f"modality {name!r} is not configured (known: {sorted(self.modalities)})"
            ) from None

    @property
    def all_phases(self) -> tuple[str, ...]:
        """Every configured phase name, in configuration order, without repeats."""
        seen: dict[str, None] = {}
        for mod in self.modalities.values():
            seen.update(dict.fromkeys(mod.phases))
        return tuple(seen)

    @property
    def deep_inputs(self) -> dict[str, DeepInputSpec]:
        """Every configured deep-learning input (``deep.inputs``), built or not."""
        return self.deep.inputs


def register_params(settings: Settings) -> dict[str, Any]:
    """The cohort-wide ``params`` of the registration jobs (plain data;
    :meth:`PreprocessSettings.from_params` reads them back)."""
    return dict(
        spacing=settings.spacing,
        n4_settings=(
            settings.n4_shrink_factor,
            settings.n4_iterations,
            settings.n4_convergence_threshold,
            settings.n4_spline_distance_mm,
        ),
        method=settings.registration_method,
        refine=settings.registration_refine,
        seed=settings.seed,
        keep_intermediates=settings.keep_intermediates,
        resampling=settings.resampling.as_param(),
    )


def _triple(values: list[float]) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in values)
    return (x, y, z)


def read_overlay(path: str | Path) -> Overlay:
    """Read an overlay file (:mod:`hccrad.overlay`); ConfigError when it is missing or invalid."""
    p = Path(project_file(path))
    if not p.is_file():
        raise ConfigError(f"config key overlay: file {path} not found")
    try:
        data = read_yaml(p.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"overlay {path} is not valid YAML: {err}") from err
    return parse_overlay(path, data)  # named as given (the summary shows it)


def apply_overlay(config: Mapping[str, Any]) -> tuple[dict[str, Any], Overlay | None, tuple]:
    """``config`` with its overlay's ``config`` part merged over it, the overlay, and the values
    it changed (against the full-scale configuration with its defaults filled in)."""
    path = config.get("overlay")
    if not path:
        return dict(config), None, ()
    overlay = read_overlay(path)
    full_scale = validate_config({k: v for k, v in config.items() if k != "overlay"})
    merged = deep_merge(config, overlay.config)
    return merged, overlay, changes("config", full_scale, overlay.config)


def settings_from_config(config: Mapping[str, Any]) -> Settings:
    """Validate ``config`` (with its overlay applied) and turn it into :class:`Settings`."""
    config, overlay, overlay_changes = apply_overlay(config)
    c = validate_config(config)
    modalities = {}
    for name, m in c["modalities"].items():
        norm = dict(m["normalization"])
        if "percentiles" in norm:
            norm["percentiles"] = tuple(norm["percentiles"])
        modalities[name] = Modality(
            name=name,
            phases=tuple(m["phases"]),
            reference_phase=m["reference_phase"],
            n4=bool(m["n4"]),
            normalization=Normalization(**norm),
        )
    return Settings(
        cohort=Path(c["cohort"]),
        clinical=Path(c["clinical"]),
        seed=c["seed"],
        sheet_errors=c["sheet_errors"],
        keep_intermediates=c["keep_intermediates"],
        modalities=modalities,
        spacing=_triple(c["resample"]["spacing"]),
        resampling=Resampling(
            grid=c["resample"]["grid"],
            interpolation=c["resample"]["interpolation"],
            mask_threshold=c["resample"]["mask_threshold"],
            round_ct=c["resample"]["round_ct"],
        ),
        n4_shrink_factor=c["n4"]["shrink_factor"],
        n4_iterations=tuple(c["n4"]["iterations"]),
        n4_convergence_threshold=c["n4"]["convergence_threshold"],
        n4_spline_distance_mm=float(c["n4"]["spline_distance_mm"]),
        registration_method=c["registration"]["method"],
        registration_refine=c["registration"]["refine"],
        ring_distance_mm=float(c["peritumoral"]["distance_mm"]),
        ring_clip_to_liver=c["peritumoral"]["clip_to_liver"],
        montage_per_row=c["qc"]["montage_per_row"],
        radiomics_params={m: Path(p) for m, p in c["radiomics"]["params"].items()},
        radiomics_stage=dict(c["radiomics"]["image_stage"]),
        radiomics_regions=tuple(c["radiomics"]["regions"]),
        radiomics_study_params=bool(c["radiomics"]["study_params"]),
        habitats=Habitats(
            **{
                **c["habitats"],
                "modalities": tuple(c["habitats"]["modalities"]),
                "phases": tuple(c["habitats"]["phases"]),
                "classes": tuple(c["habitats"]["classes"]),
                "features": c["habitats"]["features"]
                if isinstance(c["habitats"]["features"], str)
                else tuple(c["habitats"]["features"]),
                "k_range": tuple(c["habitats"]["k_range"]),
            }
        ),
        segmentation=Segmentation(**c["segmentation"]),
        deep=Deep(
            enabled=bool(c["deep"]["enabled"]),
            train_gpus=int(c["deep"]["train_gpus"]),
            threads=int(c["deep"]["threads"]),
            inputs={
                name: DeepInputSpec.from_param({"name": name, **spec})
                for name, spec in c["deep"]["inputs"].items()
            },
        ),
        studies=tuple(c["studies"]) if "studies" in c else DEFAULT_STUDY_FILES,
        audit=Audit(
            drift_threshold=float(c["audit"]["drift_threshold"]),
            icc_thresholds=tuple(float(t) for t in c["audit"]["icc_thresholds"]),
            truth=c["audit"]["truth"],
            fail_on_identifiers=bool(c["audit"]["fail_on_identifiers"]),
        ),
        overlay=overlay,
        overlay_changes=overlay_changes,
    )


def load_settings(path: str | Path, **overrides: Any) -> Settings:
    """Read a YAML configuration file, apply top-level ``overrides``, validate it."""
    with open(path) as fh:
        config = read_yaml(fh) or {}
    config.update({k: v for k, v in overrides.items() if v is not None})
    return settings_from_config(config)
