"""Hidden biology, clinical variables, labels and survival of one synthetic patient.

Everything here is cheap (no arrays): a cohort of thousands of patients can be drawn in well under a
second, which the tests use to check the planted label-driver associations. The generating equations
and their effect sizes are documented in ``docs/synthetic_cohort.md``; the coefficients live in
:data:`COEF` so the document and the code can be compared line by line.

Notation: ``sigmoid(u) = 1 / (1 + exp(-u))``; all latents are standard normal unless stated.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Centers and their role: A primary (train/validation), B external test, C temporal test.
CENTERS: tuple[str, ...] = ("A", "B", "C")
#: Patient ``i`` (0-based, within a modality) belongs to ``CENTER_CYCLE[i % 4]``: A 50 %, B 25 %,
#: C 25 %,
#: stable when patients are added (patient ``i`` never changes center).
CENTER_CYCLE: tuple[str, ...] = ("A", "B", "C", "A")
MODALITY_CODE: dict[str, int] = {"MR": 1, "CT": 2}

#: Acquisition date windows per center (C is strictly later than A and B: the temporal test set).
DATE_RANGES: dict[str, tuple[_dt.date, _dt.date]] = {
    "A": (_dt.date(2015, 1, 1), _dt.date(2019, 12, 31)),
    "B": (_dt.date(2015, 1, 1), _dt.date(2019, 12, 31)),
    "C": (_dt.date(2020, 1, 1), _dt.date(2022, 12, 31)),
}

#: Generating coefficients (see docs/synthetic_cohort.md, "Planted signal").
COEF: dict[str, float] = {
    # PD grade: logit = b0 + b1 * aggressiveness
    "grade_b0": -0.85,
    "grade_aggr": 2.0,
    # MVI latent m = (0.8 * aggressiveness + 1.2 * mvi_own) / sqrt(0.8^2 + 1.2^2);
    # logit = b0 + b1 * m
    "mvi_b0": -0.45,
    "mvi_m": 1.8,
    # satellite latent s = (0.6 * m + 0.8 * sat_own) / 1.0
    # early recurrence logit (er_aggr: the tumor's own aggressiveness beyond MVI, e.g. its
    # grade, which the tumor images show as necrosis and viable-habitat texture)
    "er_b0": -1.50,
    "er_mvi": 0.9,
    "er_aggr": 0.8,
    "er_log2size": 0.6,
    "er_multi": 0.5,
    "er_log10afp": 0.35,
    "er_ast": 0.3,
    "er_sat": 1.0,
    # proliferative: logit = b0 + b1 * prolif_latent
    "prolif_b0": -0.9,
    "prolif_p": 2.0,
    # TACE response: logit = b0 + b1 * proliferative + b2 * aggressiveness + b3 * log2(size / 30)
    "tace_b0": 0.55,
    "tace_prolif": -1.6,
    "tace_aggr": -0.4,
    "tace_log2size": -0.4,
    # overall survival, Weibull shape k and baseline scale (months) at linear predictor 0
    "os_shape": 1.2,
    "os_scale": 80.0,
    "os_grade": 0.6,
    "os_mvi": 0.5,
    "os_prolif": 0.4,
    "os_er": 0.8,
    "os_aggr": 0.3,
    "os_cpb": 0.5,
    "os_log2size": 0.3,
    # late recurrence (after 24 months, patients without early recurrence)
    "rfs_shape": 1.1,
    "rfs_scale": 45.0,
    "rfs_mvi": 0.4,
    "rfs_aggr": 0.3,
    # progression after TACE
    "pfs_shape": 1.1,
    "pfs_scale": 16.0,
    "pfs_nonresp": 1.0,
    "pfs_prolif": 0.5,
    "pfs_aggr": 0.3,
}


def sigmoid(u: float) -> float:
    """Logistic function ``1 / (1 + exp(-u))``."""
    return 1.0 / (1.0 + math.exp(-u))


def _weibull(
    rng: np.random.Generator, shape: float, scale: float, eta: float, lower: float = 0.0
) -> float:
    """Weibull time with hazard ``h(t) = k/s (t/s)^(k-1) exp(eta)``, conditional on ``T > lower``.

    Uses inversion of the cumulative hazard ``H(t) = (t/s)^k exp(eta)``:
    ``T = s * ((lower/s)^k - log(U) / exp(eta))^(1/k)``.
    """
    u = rng.uniform(1e-12, 1.0)
    h0 = (lower / scale) ** shape
    return scale * (h0 - math.log(u) / math.exp(eta)) ** (1.0 / shape)


@dataclass
class Biology:
    """Hidden variables, clinical variables, labels and survival of one patient.

    Attributes:
        hidden: the latent variables (standard normal unless named ``*_fraction`` etc.) and the
            derived image-generating values (necrotic/viable fractions, texture heterogeneity,
            peritumoral enhancement, margin irregularity, satellite rate, capsule coverage, ...).
        clinical: the clinical-table row (without ``patient``/``center``/``modality``), values in
            their final written form (floats rounded, ints, strings).
        tumor_diameters_mm: nominal long-axis diameters of the tumors, index lesion first.
    """

    hidden: dict[str, float] = field(default_factory=dict)
    clinical: dict[str, Any] = field(default_factory=dict)
    tumor_diameters_mm: list[float] = field(default_factory=list)


def center_of(index: int) -> str:
    """Center of the ``index``-th patient (0-based) of a modality: cycle A, B, C, A."""
    return CENTER_CYCLE[index % len(CENTER_CYCLE)]


def number_in_center(index: int) -> int:
    """1-based running number of patient ``index`` within its center and modality."""
    center = center_of(index)
    per_cycle = CENTER_CYCLE.count(center)
    full, rest = divmod(index, len(CENTER_CYCLE))
    return full * per_cycle + CENTER_CYCLE[: rest + 1].count(center)


def patient_id(modality: str, index: int) -> str:
    """Cohort patient id, e.g. ``AMR001``: center + modality + 3-digit number within the center."""
    return f"{center_of(index)}{modality}{number_in_center(index):03d}"


@dataclass(frozen=True)
class _Latents:
    """The standard-normal latents of one patient and the two derived ones (``m``, ``s_lat``)."""

    aggr: float
    mvi_own: float
    prolif: float
    sat_own: float
    eps_nec: float
    eps_het: float
    eps_vasc: float
    eps_size: float
    m: float
    s_lat: float


def _draw_latents(rng: np.random.Generator, ov: dict[str, float]) -> _Latents:
    """The latents, drawn first and always in this order (overridden values still draw)."""
    z = rng.standard_normal(8)
    aggr = float(ov.get("aggressiveness", z[0]))
    mvi_own = float(ov.get("mvi_latent_own", z[1]))
    prolif = float(ov.get("prolif_latent", z[2]))
    sat_own = float(ov.get("sat_latent_own", z[3]))
    eps_nec, eps_het, eps_vasc, eps_size = (float(v) for v in z[4:8])
    m = (0.8 * aggr + 1.2 * mvi_own) / math.hypot(0.8, 1.2)
    s_lat = 0.6 * m + 0.8 * sat_own
    return _Latents(aggr, mvi_own, prolif, sat_own, eps_nec, eps_het, eps_vasc, eps_size, m, s_lat)


def _demographics(rng: np.random.Generator) -> dict[str, Any]:
    """Age, sex, viral hepatitis and cirrhosis."""
    age = int(np.clip(round(rng.normal(55.0, 11.0)), 25, 85))
    sex = "M" if rng.uniform() < 0.84 else "F"
    u_virus = rng.uniform()
    hbv = int(u_virus < 0.80)
    hcv = int(0.78 < u_virus < 0.88)  # a few co-infections
    cirrhosis = int(rng.uniform() < (0.80 if hbv or hcv else 0.45))
    return {"age": age, "sex": sex, "hbv": hbv, "hcv": hcv, "cirrhosis": cirrhosis}


def _tumor_burden(rng: np.random.Generator, lat: _Latents) -> list[float]:
    """Nominal tumor diameters (mm), index lesion first."""
    u_num = rng.uniform()
    n_tumors = 1 if u_num < 0.68 else (2 if u_num < 0.90 else 3)
    d_index = float(np.clip(26.0 * math.exp(0.30 * lat.eps_size + 0.10 * lat.aggr), 12.0, 38.0))
    diameters = [d_index]
    for _ in range(n_tumors - 1):
        diameters.append(float(np.clip(d_index * rng.uniform(0.35, 0.7), 8.0, d_index)))
    return diameters


def _labs(
    rng: np.random.Generator, lat: _Latents, log2size: float, cirrhosis: int
) -> dict[str, Any]:
    """Laboratory values (log-normal; AFP heavy-tailed and correlated with the proliferative
    latent) and the Child-Pugh class."""
    aggr, prolif = lat.aggr, lat.prolif
    log10_afp = 1.35 + 0.75 * prolif + 0.25 * aggr + rng.normal(0.0, 0.85)
    afp = float(np.clip(10.0**log10_afp, 0.8, 120000.0))
    ast = float(math.exp(math.log(38.0) + 0.1 * aggr + 0.25 * log2size + rng.normal(0.0, 0.38)))
    alt = float(
        math.exp(math.log(36.0) + 0.6 * (math.log(ast) - math.log(38.0)) + rng.normal(0.0, 0.35))
    )
    ggt = float(math.exp(math.log(62.0) + 0.15 * aggr + rng.normal(0.0, 0.65)))
    tbil = float(math.exp(math.log(14.5) + 0.25 * cirrhosis + rng.normal(0.0, 0.42)))
    alb = float(np.clip(rng.normal(41.0 - 2.5 * cirrhosis, 4.5), 22.0, 55.0))
    child_pugh = "B" if (alb < 32.0 or tbil > 34.0 or rng.uniform() < 0.05) else "A"
    return {
        "afp": afp,
        "ast": ast,
        "alt": alt,
        "ggt": ggt,
        "tbil": tbil,
        "alb": alb,
        "child_pugh": child_pugh,
    }


def _labels(
    rng: np.random.Generator,
    lat: _Latents,
    log2size: float,
    n_tumors: int,
    labs: dict[str, Any],
) -> dict[str, Any]:
    """The binary labels and the early-recurrence linear predictor ``er_lin``."""
    c = COEF
    aggr = lat.aggr
    grade_pd = int(rng.uniform() < sigmoid(c["grade_b0"] + c["grade_aggr"] * aggr))
    mvi = int(rng.uniform() < sigmoid(c["mvi_b0"] + c["mvi_m"] * lat.m))
    ast_std = (labs["ast"] - 40.0) / 20.0
    er_lin = (
        c["er_b0"]
        + c["er_mvi"] * mvi
        + c["er_aggr"] * aggr
        + c["er_log2size"] * log2size
        + c["er_multi"] * (n_tumors > 1)
        + c["er_log10afp"] * (math.log10(labs["afp"]) - 1.5)
        + c["er_ast"] * ast_std
        + c["er_sat"] * lat.s_lat
    )
    early_rec = int(rng.uniform() < sigmoid(er_lin))
    proliferative = int(rng.uniform() < sigmoid(c["prolif_b0"] + c["prolif_p"] * lat.prolif))
    tace_resp = int(
        rng.uniform()
        < sigmoid(
            c["tace_b0"]
            + c["tace_prolif"] * proliferative
            + c["tace_aggr"] * aggr
            + c["tace_log2size"] * log2size
        )
    )
    return {
        "grade_pd": grade_pd,
        "mvi": mvi,
        "er_lin": er_lin,
        "early_recurrence": early_rec,
        "proliferative": proliferative,
        "tace_response": tace_resp,
    }


def _staging(
    rng: np.random.Generator, aggr: float, mvi: int, diameters: list[float], child_pugh: str
) -> tuple[str, str]:
    """BCLC and CNLC stages (simplified; the image holds at most three tumors, "3" stands for
    "3 or more")."""
    n_tumors, d_index = len(diameters), diameters[0]
    macrovascular = rng.uniform() < 0.03 * (1.0 + mvi) * (1.0 + max(aggr, 0.0))
    if macrovascular:
        bclc, cnlc = "C", "IIIa"
    elif n_tumors == 1:
        bclc = "0" if (d_index <= 20.0 and child_pugh == "A") else "A"
        cnlc = "Ia" if d_index <= 50.0 else "Ib"
    else:
        bclc = "A" if d_index <= 30.0 else "B"
        cnlc = "Ib" if d_index <= 30.0 else ("IIa" if n_tumors == 2 else "IIb")
    return bclc, cnlc


def _survival(
    rng: np.random.Generator,
    aggr: float,
    log2size: float,
    child_pugh: str,
    lab: dict[str, Any],
) -> dict[str, float]:
    """Follow-up and the OS, RFS and PFS times and events (months, not yet rounded)."""
    c = COEF
    mvi, early_rec = lab["mvi"], lab["early_recurrence"]
    proliferative, tace_resp = lab["proliferative"], lab["tace_response"]
    follow_up = rng.uniform(
        26.0, 90.0
    )  # administrative censoring, >= 26 so ER is always observable
    u_er_time = rng.beta(1.6, 1.4)
    eta_r = c["rfs_mvi"] * mvi + c["rfs_aggr"] * aggr
    t_late = _weibull(rng, c["rfs_shape"], c["rfs_scale"], eta_r, lower=0.0)
    eta_os = (
        c["os_grade"] * lab["grade_pd"]
        + c["os_mvi"] * mvi
        + c["os_prolif"] * proliferative
        + c["os_er"] * early_rec
        + c["os_aggr"] * aggr
        + c["os_cpb"] * (child_pugh == "B")
        + c["os_log2size"] * log2size
    )
    if early_rec:
        t_rec = max(1.5, 24.0 * u_er_time)
        t_death = _weibull(rng, c["os_shape"], c["os_scale"], eta_os, lower=t_rec)
    else:
        t_rec = 24.0 + t_late
        t_death = _weibull(rng, c["os_shape"], c["os_scale"], eta_os, lower=24.0)
    t_rfs_event = min(t_rec, t_death)  # RFS events: recurrence or death
    rfs_months, rfs_event = min(t_rfs_event, follow_up), int(t_rfs_event <= follow_up)
    os_months, os_event = min(t_death, follow_up), int(t_death <= follow_up)
    eta_p = (
        c["pfs_nonresp"] * (1 - tace_resp) + c["pfs_prolif"] * proliferative + c["pfs_aggr"] * aggr
    )
    t_prog = _weibull(rng, c["pfs_shape"], c["pfs_scale"], eta_p)
    t_pfs_event = min(t_prog, t_death)
    pfs_months, pfs_event = min(t_pfs_event, follow_up), int(t_pfs_event <= follow_up)
    return {
        "follow_up": follow_up,
        "os_months": os_months,
        "os_event": os_event,
        "rfs_months": rfs_months,
        "rfs_event": rfs_event,
        "pfs_months": pfs_months,
        "pfs_event": pfs_event,
    }


def _acquisition_date(rng: np.random.Generator, center: str) -> _dt.date:
    """A uniform date in the center's window (:data:`DATE_RANGES`)."""
    lo, hi = DATE_RANGES[center]
    return lo + _dt.timedelta(days=int(rng.integers(0, (hi - lo).days + 1)))


def _hidden_values(
    lat: _Latents, log2size: float, er_lin: float, follow_up: float
) -> dict[str, float]:
    """The latents and the image-generating values (documented in docs/synthetic_cohort.md)."""
    aggr, prolif, m, eps_nec = lat.aggr, lat.prolif, lat.m, lat.eps_nec
    nec_fraction = float(
        np.clip(
            0.04 + 0.46 * sigmoid(1.3 * aggr + 0.5 * prolif + 0.3 * log2size + 0.5 * eps_nec - 0.9),
            0.02,
            0.6,
        )
    )
    viable_share = 0.55 + 0.30 * sigmoid(-0.6 * aggr + 0.5 * eps_nec)
    viable_fraction = float((1.0 - nec_fraction) * viable_share)
    inter_fraction = float(1.0 - nec_fraction - viable_fraction)
    return {
        "aggressiveness": aggr,
        "mvi_latent_own": lat.mvi_own,
        "mvi_latent": m,
        "prolif_latent": prolif,
        "sat_latent_own": lat.sat_own,
        "sat_latent": lat.s_lat,
        "necrotic_fraction": nec_fraction,
        "viable_fraction": viable_fraction,
        "intermediate_fraction": inter_fraction,
        # fine-texture amplitude (relative std) inside the viable habitat only
        "viable_heterogeneity": 0.04 + 0.14 * sigmoid(1.6 * aggr + 0.4 * lat.eps_het),
        # arterial enhancement of viable tumor (relative to liver); rim share (proliferative type)
        "arterial_vascularity": float(np.clip(0.55 + 0.12 * lat.eps_vasc, 0.25, 0.9)),
        "rim_enhancement": 0.75 * sigmoid(2.5 * prolif - 1.0),
        "washout": 0.22 + 0.06 * sigmoid(aggr),
        # peritumoral arterial enhancement amplitude (relative to liver AP signal)
        "peritumoral_enhancement": 0.05 + 0.50 * sigmoid(2.5 * m - 1.0),
        # margin irregularity: relative radial amplitude of the boundary perturbation
        "margin_irregularity": 0.03 + 0.14 * sigmoid(2.0 * m - 0.5),
        "satellite_rate": 3.0 * sigmoid(2.0 * lat.s_lat - 1.5),
        "capsule_coverage": float(np.clip(0.95 - 0.6 * sigmoid(1.5 * m), 0.2, 0.95)),
        "er_linear_predictor": er_lin,
        "follow_up_months": follow_up,
    }


def _clinical_row(
    acq: _dt.date,
    demo: dict[str, Any],
    labs: dict[str, Any],
    diameters: list[float],
    stages: tuple[str, str],
    lab: dict[str, Any],
    surv: dict[str, float],
) -> dict[str, Any]:
    """The clinical-table values in their written form (rounded), consistent after rounding."""
    clinical: dict[str, Any] = {
        "acquisition_date": acq.isoformat(),
        "age": demo["age"],
        "sex": demo["sex"],
        "afp": round(labs["afp"], 1),
        "ast": round(labs["ast"], 1),
        "alt": round(labs["alt"], 1),
        "ggt": round(labs["ggt"], 1),
        "tbil": round(labs["tbil"], 1),
        "alb": round(labs["alb"], 1),
        "child_pugh": labs["child_pugh"],
        "hbv": demo["hbv"],
        "hcv": demo["hcv"],
        "cirrhosis": demo["cirrhosis"],
        "tumor_size_mm": round(diameters[0], 1),
        "tumor_number": len(diameters),
        "bclc": stages[0],
        "cnlc": stages[1],
        "grade_pd": lab["grade_pd"],
        "mvi": lab["mvi"],
        "early_recurrence": lab["early_recurrence"],
        "proliferative": lab["proliferative"],
        "os_months": round(max(surv["os_months"], 0.1), 1),
        "os_event": surv["os_event"],
        "rfs_months": round(max(surv["rfs_months"], 0.1), 1),
        "rfs_event": surv["rfs_event"],
        "pfs_months": round(max(surv["pfs_months"], 0.1), 1),
        "pfs_event": surv["pfs_event"],
        "tace_response": lab["tace_response"],
    }
    # keep rounding from breaking the definitions: no early recurrence <=> RFS > 24 months, and
    # the ordering pfs <= os, rfs <= os
    if not lab["early_recurrence"]:
        clinical["rfs_months"] = max(clinical["rfs_months"], 24.1)
        clinical["os_months"] = max(clinical["os_months"], clinical["rfs_months"])
    clinical["rfs_months"] = min(clinical["rfs_months"], clinical["os_months"])
    clinical["pfs_months"] = min(clinical["pfs_months"], clinical["os_months"])
    return clinical


def sample_biology(
    rng: np.random.Generator, modality: str, center: str, overrides: dict[str, float] | None = None
) -> Biology:
    """Draw the hidden variables, the clinical row, the labels and survival of one patient.

    Args:
        rng: the patient's own generator (``np.random.default_rng([seed, modality_code, index])``).
        modality: ``"MR"`` or ``"CT"`` (sets field strength / vendor columns).
        center: ``"A"``, ``"B"`` or ``"C"`` (sets acquisition date window, vendor, field strength).
        overrides: optional values for the standard-normal latents (``aggressiveness``,
            ``mvi_latent_own``, ``prolif_latent``, ``sat_latent_own``) — used by tests to generate
            the same patient with a different biology. Every random draw is made in the same order
            whether
            or not a value is overridden, so the rest of the patient is unchanged.

    Returns:
        The patient's :class:`Biology`.
    """
    # the draws, in this order: latents, demographics and liver background, tumor burden, labs,
    # labels, staging, survival, acquisition date
    lat = _draw_latents(rng, overrides or {})
    demo = _demographics(rng)
    diameters = _tumor_burden(rng, lat)
    log2size = math.log2(diameters[0] / 30.0)
    labs = _labs(rng, lat, log2size, demo["cirrhosis"])
    lab = _labels(rng, lat, log2size, len(diameters), labs)
    stages = _staging(rng, lat.aggr, lab["mvi"], diameters, labs["child_pugh"])
    surv = _survival(rng, lat.aggr, log2size, labs["child_pugh"], lab)
    acq = _acquisition_date(rng, center)
    hidden = _hidden_values(lat, log2size, lab["er_lin"], surv["follow_up"])
    clinical = _clinical_row(acq, demo, labs, diameters, stages, lab, surv)
    return Biology(hidden=hidden, clinical=clinical, tumor_diameters_mm=diameters)


#: Columns permuted together by ``null=True`` (labels and survival pairs, one permutation).
NULL_PERMUTED_COLUMNS: tuple[str, ...] = (
    "grade_pd",
    "mvi",
    "early_recurrence",
    "proliferative",
    "tace_response",
    "os_months",
    "os_event",
    "rfs_months",
    "rfs_event",
    "pfs_months",
    "pfs_event",
)
