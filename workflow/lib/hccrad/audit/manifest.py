"""Provenance manifest of a run: what went in, what came out, and with which code.

The manifest records the SHA-256 of every result file under ``results/`` (logs, benchmarks,
Snakemake markers and the audit's own folder excluded), of both sheets and of every file the
cohort sheet names (images, DICOM slices, masks), the installed versions of the packages the
workflow uses (:func:`importlib.metadata.version`, nothing is imported), the hash of the resolved
configuration (:func:`config_hash`), the seeds, the git commit of the checkout (and whether it has
uncommitted changes), the Python version and the platform. It is written as JSON
(``manifest.json``) and as a flat table with one row per file (``manifest.tsv``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from hccrad import __version__
from hccrad.audit._io import PathLike, is_bookkeeping, sha256_file, walk_files
from hccrad.config import validate_config
from hccrad.fileio import write_json, write_tsv
from hccrad.sheets import read_cohort_sheet

log = logging.getLogger(__name__)

#: Distributions whose versions are recorded: (label, candidate distribution names).
PACKAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("hccrad", ("hccrad",)),
    ("numpy", ("numpy",)),
    ("scipy", ("scipy",)),
    ("pandas", ("pandas",)),
    ("pyarrow", ("pyarrow",)),
    ("scikit-learn", ("scikit-learn",)),
    ("imbalanced-learn", ("imbalanced-learn",)),
    ("statsmodels", ("statsmodels",)),
    ("lifelines", ("lifelines",)),
    ("xgboost", ("xgboost", "xgboost-cpu")),
    ("shap", ("shap",)),
    ("SimpleITK", ("SimpleITK", "simpleitk")),
    ("pydicom", ("pydicom",)),
    ("nibabel", ("nibabel",)),
    ("antspyx", ("antspyx",)),
    ("pyradiomics", ("pyradiomics", "pyradiomics-bhklab")),
    ("PyWavelets", ("PyWavelets", "pywavelets")),
    ("torch", ("torch",)),
    ("monai", ("monai",)),
    ("matplotlib", ("matplotlib",)),
    ("pyyaml", ("PyYAML", "pyyaml")),
    ("jsonschema", ("jsonschema",)),
    ("snakemake", ("snakemake",)),
)

#: Cohort-sheet columns that name input files.
SHEET_FILE_COLUMNS = ("image", "tumor_mask", "liver_mask", "reader2_mask", "reader1_repeat_mask")


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys, no whitespace and ASCII only: equal objects give equal strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of the resolved configuration.

    The configuration is first validated with :func:`hccrad.config.validate_config`, which fills
    in every default, so a file that spells a default out and one that leaves it out hash alike.
    """
    resolved = validate_config(config)
    return hashlib.sha256(canonical_json(resolved).encode("ascii")).hexdigest()


def package_versions() -> dict[str, str]:
    """Installed versions of :data:`PACKAGES` (those not installed are left out)."""
    out: dict[str, str] = {}
    for label, names in PACKAGES:
        for name in names:
            try:
                out[label] = metadata.version(name)
                break
            except metadata.PackageNotFoundError:
                continue
    if "hccrad" not in out:  # run from a checkout without installation (per-rule conda envs)
        out["hccrad"] = __version__
    return out


def git_state(project_dir: PathLike | None) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git checkout at ``project_dir``; None when it is not one.

    ``dirty`` is True when tracked files differ from the commit (untracked files are ignored).
    Only read-only git commands run (``--no-optional-locks``: not even the index is refreshed).
    """
    if project_dir is None:
        return None

    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(
                ["git", "--no-optional-locks", "-C", str(project_dir), *args],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def sheet_files(cohort_sheet: PathLike) -> list[dict[str, str]]:
    """Every file the cohort sheet names: ``{"role", "patient", "path", "file"}`` rows.

    ``path`` is the cell as written (relative paths are relative to the sheet's folder), ``file``
    the file on disk; a DICOM series folder gives one row per file inside it. Files that do not
    exist are listed with an empty ``file``.
    """
    sheet_path = Path(cohort_sheet)
    base = sheet_path.resolve().parent
    sheet = read_cohort_sheet(sheet_path)
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for rec in sheet.to_dict(orient="records"):
        for role in SHEET_FILE_COLUMNS:
            cell = str(rec.get(role, "") or "")
            if not cell or cell in seen:
                continue
            seen.add(cell)
            target = Path(cell) if Path(cell).is_absolute() else base / cell
            files = sorted(p for p in target.rglob("*") if p.is_file()) if target.is_dir() else []
            if target.is_dir():
                for f in files:
                    rel = f.relative_to(target).as_posix()
                    rows.append(
                        {
                            "role": role,
                            "patient": rec.get("patient", ""),
                            "path": f"{cell.rstrip('/')}/{rel}",
                            "file": str(f),
                        }
                    )
            else:
                rows.append(
                    {
                        "role": role,
                        "patient": rec.get("patient", ""),
                        "path": cell,
                        "file": str(target) if target.is_file() else "",
                    }
                )
    return rows


def result_files(
    results: PathLike, *, skip_prefixes: Sequence[str] = ("cohort/audit/",)
) -> list[str]:
    """Result files under ``results`` (relative POSIX paths), bookkeeping and ``skip_prefixes``
    excluded."""
    return [
        rel
        for rel in walk_files(results)
        if not is_bookkeeping(rel) and not any(rel.startswith(p) for p in skip_prefixes)
    ]


def study_seeds(study_dirs: Sequence[PathLike]) -> dict[str, Any]:
    """The seed each study ran with (``metrics.json: seed``)."""
    seeds: dict[str, Any] = {}
    for d in study_dirs:
        metrics = Path(d) / "metrics.json"
        if metrics.is_file():
            seeds[Path(d).name] = json.loads(metrics.read_text()).get("seed")
    return seeds


def build_manifest(
    results: PathLike,
    *,
    config: Mapping[str, Any],
    cohort_sheet: PathLike,
    clinical: PathLike,
    study_dirs: Sequence[PathLike] = (),
    project_dir: PathLike | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """The provenance manifest of the run in ``results`` (see the module docstring); ``workers``
    threads hash the files (hashlib releases the GIL)."""
    results = Path(results)
    rels = result_files(results)
    rows = sheet_files(cohort_sheet)
    files = [results / rel for rel in rels] + [Path(r["file"]) for r in rows if r["file"]]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        digest = dict(zip(files, pool.map(sha256_file, files), strict=True))
    outputs = [
        {"path": rel, "bytes": (results / rel).stat().st_size, "sha256": digest[results / rel]}
        for rel in rels
    ]
    inputs = []
    for row in rows:
        f = row["file"]
        inputs.append(
            {
                "role": row["role"],
                "patient": row["patient"],
                "path": row["path"],
                "bytes": Path(f).stat().st_size if f else None,
                "sha256": digest[Path(f)] if f else None,
            }
        )
    sheets = {
        name: {"path": str(p), "sha256": sha256_file(p) if Path(p).is_file() else None}
        for name, p in (("cohort", cohort_sheet), ("clinical", clinical))
    }
    seeds: dict[str, Any] = {
        "config": validate_config(config)["seed"],
        "studies": study_seeds(study_dirs),
    }
    synth = Path(cohort_sheet).resolve().parent / "synth.json"
    if synth.is_file():
        seeds["synthetic_cohort"] = json.loads(synth.read_text()).get("seed")
    manifest = {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "git": git_state(project_dir),
        "config_sha256": config_hash(config),
        "seeds": seeds,
        "sheets": sheets,
        "inputs": inputs,
        "outputs": outputs,
    }
    log.info(
        "manifest: %d result files, %d input files, config %s",
        len(outputs),
        len(inputs),
        manifest["config_sha256"][:12],
    )
    return manifest


def manifest_table(manifest: Mapping[str, Any]) -> pd.DataFrame:
    """The flat form of a manifest: one row per sheet, input and output file."""
    rows = [
        {"kind": "sheet", "role": name, "path": s["path"], "bytes": None, "sha256": s["sha256"]}
        for name, s in manifest["sheets"].items()
    ]
    rows += [
        {
            "kind": "input",
            "role": r["role"],
            "path": r["path"],
            "bytes": r["bytes"],
            "sha256": r["sha256"],
        }
        for r in manifest["inputs"]
    ]
    rows += [
        {
            "kind": "output",
            "role": "",
            "path": r["path"],
            "bytes": r["bytes"],
            "sha256": r["sha256"],
        }
        for r in manifest["outputs"]
    ]
    table = pd.DataFrame(rows, columns=["kind", "role", "path", "bytes", "sha256"])
    table["bytes"] = table["bytes"].astype("Int64")
    return table


def write_manifest(manifest: Mapping[str, Any], json_path: PathLike, tsv_path: PathLike) -> None:
    """Write the manifest as JSON and as the flat TSV of :func:`manifest_table`."""
    write_json(dict(manifest), json_path)
    write_tsv(manifest_table(manifest), tsv_path)
