"""Cross-checks of a study: what the JSON schema cannot express (references between sections,
keys allowed per block source and model kind, leakage of the label into the features)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import pairwise
from typing import Any

from hccrad.errors import ConfigError
from hccrad.studies.spec import DERIVED_MULTI_OPS, EVAL_SPLITS, StudySpec

#: Keys each block source takes (besides ``source`` and ``description``).
_BLOCK_KEYS = {
    "radiomics": {"phases", "regions", "image_types", "classes", "features", "exclude"},
    "habitats": {"columns", "exclude"},
    "clinical": {"columns", "categorical"},
    "table": {"path", "columns", "exclude"},
}
#: Keys each model kind takes (besides ``kind`` and ``description``).
_MODEL_KEYS = {
    "pipeline": {
        "blocks", "selection", "classifier", "params", "grid", "cv", "smote", "output",
        "keep", "head", "pool",
    },
    "clinical": {"candidates", "categorical", "scores", "alpha", "keep", "multivariable"},
    "score_fusion": {"models", "method"},
}

#: Reports one problem: ``bad(key, message)``.
Report = Callable[[str, str], None]


def cross_check(spec: StudySpec, where: str) -> None:
    """The checks a JSON schema cannot express; raises ConfigError naming the key."""
    problems: list[str] = []

    def bad(key: str, msg: str) -> None:
        problems.append(f"key {key}: {msg}")

    if not spec.path.endswith((".yaml", ".yml")):
        bad("(file)", "study files end in .yaml")
    _check_blocks(spec, bad)
    for name, raw in spec.raw["models"].items():
        _check_model(spec, name, raw, bad)
    for name, deep in spec.deep_models.items():
        if deep.phase is not None and deep.phases:
            bad(f"deep_models.{name}", "phase (one network) and phases (one per phase) exclude "
                "each other")  # fmt: skip
    _check_references(spec, bad)
    _check_derived(spec, bad)
    _check_criteria(spec, bad)
    if problems:
        raise ConfigError(f"{where}: invalid\n  " + "\n  ".join(problems))


def _check_blocks(spec: StudySpec, bad: Report) -> None:
    for name, b in spec.raw["blocks"].items():
        allowed = _BLOCK_KEYS[b["source"]] | {"source", "description"}
        extra = sorted(set(b) - allowed)
        if extra:
            bad(f"blocks.{name}", f"{extra} not allowed for source {b['source']!r}")
        if b["source"] == "clinical" and spec.label in b.get("columns", []):
            bad(f"blocks.{name}.columns", f"holds the label {spec.label!r} (leakage)")


def _check_model(spec: StudySpec, name: str, raw: Mapping[str, Any], bad: Report) -> None:
    m = spec.models[name]
    key = f"models.{name}"
    chains = spec.raw.get("chains", {})
    if name in ("all", "none"):
        bad(key, "'all' and 'none' are reserved (decision-curve strategies)")
    extra = sorted(set(raw) - _MODEL_KEYS[m.kind] - {"kind", "description"})
    if extra:
        bad(key, f"{extra} not allowed for kind {m.kind!r}")
    sel = raw.get("selection")
    if isinstance(sel, str) and sel not in chains:
        bad(f"{key}.selection", f"unknown chain {sel!r} (chains: {sorted(chains)})")
    if m.kind == "pipeline":
        _check_pipeline(spec, name, bad)
    elif m.kind == "clinical":
        if not (m.candidates or m.scores):
            bad(key, "a clinical model needs candidates and/or scores")
        for what, names in (("candidates", m.candidates), ("keep", m.keep)):
            if spec.label in names:
                bad(f"{key}.{what}", f"holds the label {spec.label!r} (leakage)")
    for dep in m.depends_on:
        what = "scores" if m.kind == "clinical" else "models"
        if dep not in spec.models:
            bad(f"{key}.{what}", f"unknown model {dep!r}")
        elif dep == name:
            bad(f"{key}.{what}", "a model cannot use its own score")
        elif spec.models[dep].depends_on:
            bad(f"{key}.{what}", f"{dep!r} itself stacks other models (one level only)")


def _check_pipeline(spec: StudySpec, name: str, bad: Report) -> None:
    m = spec.models[name]
    key = f"models.{name}"
    if not m.blocks:
        bad(f"{key}.blocks", "a pipeline model needs at least one block")
    for b in m.blocks:
        if b not in spec.blocks:
            bad(f"{key}.blocks", f"unknown block {b!r} (blocks: {sorted(spec.blocks)})")
    if m.output == "radscore" and not any(s["step"] == "lasso" for s in m.selection):
        bad(f"{key}.output", "radscore needs a lasso step in the selection chain")
    if m.output == "radscore" and (m.keep or m.head is not None or m.pool):
        bad(f"{key}.output", "radscore takes no keep, head or pool")
    raw = spec.raw["models"][name]
    if m.head is not None:
        clash = sorted({"classifier", "params", "grid", "smote"} & set(raw))
        if clash:
            bad(f"{key}.head", f"replaces the classifier: {clash} not allowed with head")
        _check_backbone(spec, key, m.head, bad)
    for k in m.keep:
        if k not in m.blocks and "__" not in k:
            bad(f"{key}.keep", f"{k!r} is neither a block of the model nor a block__column")
    _check_pool(spec, name, bad)
    for i, st in enumerate(m.selection):
        if "intra" in st and st.get("step") != "icc":
            bad(f"{key}.selection[{i}].intra", "only an icc step takes intra")
        if st.get("step") == "icc":
            if "icc_table" in st or "intra_table" in st:
                bad(f"{key}.selection[{i}]", "the ICC tables are supplied by the study layer")
            if not isinstance(st.get("intra", False), bool):
                bad(f"{key}.selection[{i}].intra", "intra is true or false")
            if not any(
                spec.blocks[b].source == "radiomics" for b in m.blocks if b in spec.blocks
            ):
                bad(f"{key}.selection[{i}]", "an icc step needs a radiomics block")


#: ``head`` settings of the fusion head alone (a head on deep-feature tables) and of the
#: end-to-end training alone (``backbone``: :class:`hccrad.deep.joint.JointFusionClassifier`).
HEAD_ONLY = ("hidden", "dropout", "zero_init")
JOINT_ONLY = ("augment", "tabular_init")


def _check_backbone(spec: StudySpec, key: str, head: dict[str, Any], bad: Any) -> None:
    """``head.backbone`` names a deep model of the study; settings fit the kind of head."""
    backbone = head.get("backbone")
    if backbone is None:
        wrong = sorted(set(JOINT_ONLY) & set(head))
        if wrong:
            bad(f"{key}.head", f"{wrong} apply to end-to-end training only (head.backbone)")
        return
    if backbone not in spec.deep_models:
        bad(f"{key}.head.backbone", f"{backbone!r} is not a deep model of the study "
            f"(deep_models: {sorted(spec.deep_models)})")  # fmt: skip
    elif spec.deep_models[backbone].phases:
        bad(f"{key}.head.backbone", f"{backbone!r} is one network per phase (phases); "
            "end-to-end training takes one network")  # fmt: skip
    wrong = sorted(set(HEAD_ONLY) & set(head))
    if wrong:
        bad(f"{key}.head", f"{wrong} do not apply with a backbone (one linear layer, trained "
            "with the network)")  # fmt: skip


def _check_pool(spec: StudySpec, name: str, bad: Report) -> None:
    """Pooled models are pipeline models on this model's blocks, or clinical models without
    stacked scores."""
    m = spec.models[name]
    seen, todo = set(), list(m.pool)
    while todo:  # pooled models' own pools, transitively
        src = todo.pop()
        if src == name:
            bad(f"models.{name}.pool", "pools itself (a cycle)")
            break
        if src in spec.models and src not in seen:
            seen.add(src)
            todo.extend(spec.models[src].pool)
    for src in m.pool:
        key = f"models.{name}.pool"
        other = spec.models.get(src)
        if other is None or src == name:
            bad(key, f"{src!r} is not another model of this study")
        elif other.kind == "pipeline":
            if set(other.blocks) - set(m.blocks):
                bad(key, f"{src!r} uses blocks {sorted(set(other.blocks) - set(m.blocks))} "
                         "this model lacks")  # fmt: skip
            if other.output == "radscore":
                bad(key, f"{src!r} is a radscore model")
        elif other.kind != "clinical" or other.scores:
            bad(key, f"{src!r}: pool takes pipeline models and clinical models without scores")


def _check_references(spec: StudySpec, bad: Report) -> None:
    """``primary``, ``explain``, ``nomogram``, ``comparisons`` and ``survival`` name models of
    the study (of the right kind)."""
    if spec.primary not in spec.models:
        bad("primary", f"unknown model {spec.primary!r}")
    if spec.explain is not None and (
        spec.explain not in spec.models or spec.models[spec.explain].kind != "pipeline"
    ):
        bad("explain", f"{spec.explain!r} is not a pipeline model of this study")
    if spec.nomogram is not None and (
        spec.nomogram not in spec.models or spec.models[spec.nomogram].kind != "clinical"
    ):
        bad("nomogram", f"{spec.nomogram!r} is not a clinical model of this study")
    for i, (a, b) in enumerate(spec.comparisons):
        for m in (a, b):
            if m not in spec.models:
                bad(f"comparisons[{i}]", f"unknown model {m!r}")
        if a == b:
            bad(f"comparisons[{i}]", "compares a model with itself")
    if spec.key_comparison and tuple(spec.key_comparison["pair"]) not in spec.comparisons:
        bad("key_comparison.pair", f"{spec.key_comparison['pair']} is not one of comparisons")
    _check_published(spec, bad)
    path_model = spec.pathology.get("model")
    if path_model is not None and (
        path_model not in spec.models or spec.models[path_model].kind != "pipeline"
    ):
        bad("pathology.model", f"{path_model!r} is not a pipeline model of this study")
    if spec.pathology and spec.label in spec.pathology.get("columns", ()):
        bad("pathology.columns", f"holds the label {spec.label!r}")
    if spec.survival is not None:
        if spec.survival.model not in spec.models:
            bad("survival.model", f"unknown model {spec.survival.model!r}")
        if spec.label in spec.survival.covariates:
            bad("survival.covariates", f"holds the label {spec.label!r}")


def _check_published(spec: StudySpec, bad: Report) -> None:
    """``published`` names this study's models and splits; a model the study lacks goes under
    ``missing_models``."""
    pub = spec.published
    for split in pub.get("cohorts", {}):
        if split not in EVAL_SPLITS:
            bad(f"published.cohorts.{split}", f"not a split ({', '.join(EVAL_SPLITS)})")
    for name, model in pub.get("models", {}).items():
        if name not in spec.models:
            bad(f"published.models.{name}", "not a model of this study (missing_models?)")
        for split in (model or {}).get("auc", {}):
            if split not in EVAL_SPLITS:
                bad(f"published.models.{name}.auc.{split}", "not a split")
    for name in pub.get("missing_models", {}):
        if name in spec.models:
            bad(f"published.missing_models.{name}", "is a model of this study (models)")


def _check_derived(spec: StudySpec, bad: Report) -> None:
    for name, dspec in spec.derived.items():
        key = f"derived.{name}"
        if name == spec.label:
            bad(key, "a derived column cannot replace the label")
        op, value = dspec["op"], dspec.get("value")
        multi = op in DERIVED_MULTI_OPS
        if multi != ("columns" in dspec):
            bad(key, f"op {op} takes {'columns (several)' if multi else 'one column'}")
        if multi and "value" in dspec:
            bad(f"{key}.value", f"{op} takes no value")
        if op == "ratio" and len(dspec.get("columns", [])) != 2:
            bad(f"{key}.columns", "ratio takes two columns (numerator, denominator)")
        weights = dspec.get("weights")
        if weights is not None and op != "sum":
            bad(f"{key}.weights", "weights belong to op sum")
        elif weights is not None and len(weights) != len(dspec.get("columns", [])):
            bad(f"{key}.weights", f"one weight per column ({len(dspec.get('columns', []))})")
        if ("bins" in dspec or "labels" in dspec) and op != "cut":
            bad(key, "bins and labels belong to op cut")
        _check_value(key, op, value, bad)
        if op == "cut":
            _check_cut(key, dspec, bad)


def _check_value(key: str, op: str, value: Any, bad: Report) -> None:
    """The ``value`` an operation of a derived column or a criterion needs."""
    if op in ("gt", "ge", "lt", "le") and not isinstance(value, int | float):
        bad(f"{key}.value", f"{op} needs a number")
    if op == "isin" and not isinstance(value, list):
        bad(f"{key}.value", "isin needs a list")
    if op == "map" and not isinstance(value, dict):
        bad(f"{key}.value", "map needs a mapping")
    if op == "between" and not (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int | float) for v in value)
        and value[0] < value[1]
    ):
        bad(f"{key}.value", "between needs [low, high] numbers with low < high")


def _check_criteria(spec: StudySpec, bad: Report) -> None:
    """``include`` / ``exclude`` tests: the value their op needs (none for notna / isna)."""
    for kind, criteria in (("include", spec.include), ("exclude", spec.exclude)):
        for i, c in enumerate(criteria):
            key = f"{kind}[{i}]"
            if c["op"] in ("notna", "isna"):
                if "value" in c:
                    bad(f"{key}.value", f"{c['op']} takes no value")
            elif c["op"] in ("eq", "ne") and c.get("value") is None:
                bad(f"{key}.value", f"{c['op']} needs a value")
            else:
                _check_value(key, c["op"], c.get("value"), bad)


def _check_cut(key: str, dspec: Mapping[str, Any], bad: Report) -> None:
    bins = dspec.get("bins")
    if not bins:
        bad(f"{key}.bins", "cut needs bins (increasing edges)")
        return
    if any(b >= c for b, c in pairwise(bins)):
        bad(f"{key}.bins", "bins must increase")
    labels = dspec.get("labels")
    if labels is not None and len(labels) != len(bins) - 1:
        bad(f"{key}.labels", f"one label per interval ({len(bins) - 1})")
    if "value" in dspec:
        bad(f"{key}.value", "cut takes bins and labels, no value")
