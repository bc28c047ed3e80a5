"""The workflow's job plan as canonical JSON: every job's rule, wildcards, inputs, outputs,
params, threads, priority and resources, as Snakemake plans them with ``--forceall``.

Used by ``tests/test_plan_snapshot.py`` to show that a refactoring leaves the plan unchanged,
and runnable on its own (it writes the plan to stdout or a file)::

    .venv/bin/python tests/plan_dump.py --workdir DIR --config cohort=... clinical=... [--out F]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _plain(value: Any, root: str) -> Any:
    """JSON-able form of a job attribute; absolute paths of this checkout become relative."""
    if isinstance(value, dict):
        return {str(k): _plain(v, root) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v, root) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if callable(value):
        return f"<function {getattr(value, '__name__', type(value).__name__)}>"
    if isinstance(value, bool | int | float) or value is None:
        return value
    text = str(value)
    return text.replace(root, "<root>")


_BUILTIN = (int, float, bool, str, complex, range, list, tuple, dict, set, frozenset, bytes)


def _param(value: Any, root: str) -> str:
    """A param as Snakemake records it to decide reruns: the repr of a built-in value; any other
    object is not recorded (a change of it reruns nothing), marked here as unrepresentable."""
    if value is None or isinstance(value, _BUILTIN):
        return repr(value).replace(root, "<root>")
    return f"<unrepresentable {type(value).__name__}>"


def _named(io_list: Any, root: str, convert: Any = _plain) -> dict[str, Any]:
    """Named entries of a Snakemake InputFiles/OutputFiles/Params object, then the unnamed."""
    names = dict(io_list._names) if hasattr(io_list, "_names") else {}
    out: dict[str, Any] = {}
    used: set[int] = set()
    for name, (start, end) in sorted(names.items()):
        end = start + 1 if end is None else end
        value = list(io_list[start:end]) if end - start != 1 else io_list[start]
        out[name] = convert(value, root)
        used.update(range(start, end))
    rest = [convert(v, root) for i, v in enumerate(io_list) if i not in used]
    if rest:
        out["_unnamed"] = rest
    return out


def job_plan(workdir: Path, config: dict[str, str], configfile: Path | None = None) -> list[dict]:
    """Every job of the default target's DAG (all jobs, as with --forceall), sorted."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        ResourceSettings,
    )

    root = str(ROOT)
    configfiles = [configfile or ROOT / "config" / "config.yaml"]
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        wf_api = api.workflow(
            resource_settings=ResourceSettings(cores=2),
            config_settings=ConfigSettings(configfiles=configfiles, config=config),
            snakefile=ROOT / "Snakefile",
            workdir=workdir,
        )
        dag_api = wf_api.dag(dag_settings=DAGSettings(forceall=True))
        workflow = dag_api.workflow_api._workflow
        workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
        workflow._build_dag()
        jobs = []
        for job in workflow.dag.jobs:
            resources = {
                k: v
                for k, v in dict(job.resources.items()).items()
                if k not in ("tmpdir", "_cores", "_nodes")
            }
            jobs.append(
                {
                    "rule": job.rule.name,
                    "wildcards": dict(job.wildcards_dict),
                    "input": _named(job.input, root),
                    "output": _named(job.output, root),
                    "params": _named(job.params, root, _param),
                    "log": _named(job.log, root),
                    "threads": job.threads,
                    "priority": job.rule.priority,
                    "resources": _plain(resources, root),
                }
            )
    return sorted(jobs, key=lambda j: json.dumps([j["rule"], j["wildcards"], j["output"]]))


def plan_digest(jobs: list[dict]) -> str:
    """SHA-256 of the canonical JSON of a plan."""
    text = json.dumps(jobs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--configfile", type=Path)
    parser.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--alias",
        nargs="*",
        default=[],
        metavar="PATH=NAME",
        help="write PATH as NAME in the plan (e.g. a temporary cohort folder as <cohort>)",
    )
    args = parser.parse_args(argv)
    config = dict(item.split("=", 1) for item in args.config)
    args.workdir.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    try:
        jobs = job_plan(args.workdir.resolve(), config, args.configfile)
    finally:
        os.chdir(cwd)
    text = json.dumps(jobs, sort_keys=True, indent=1)
    for alias in args.alias:
        path, name = alias.split("=", 1)
        text = text.replace(path, name)
    jobs = json.loads(text)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        sys.stdout.write(text + "\n")
    print(f"{len(jobs)} jobs, sha256 {plan_digest(jobs)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
