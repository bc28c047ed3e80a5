"""Savings inside Snakemake itself, applied by the workflow's ``common.smk`` and ``Snakefile``.

Measured on the 2,000-patient dry run (``tests/bench/bench_dryrun.py``, ``docs/benchmarks.md``)
and on the demo. Each function changes no result: it only removes repeated work Snakemake does
once per job while it plans, or its idle wait at the end of a run, and does nothing on a
Snakemake whose internals differ from what it expects.
"""

from __future__ import annotations

import ast
import functools
import inspect
import threading
from collections.abc import Iterable, Iterator
from typing import Any


def _functions(values: Iterable[Any]) -> Iterator[Any]:
    """The plain functions behind a rule's input, params and resources entries."""
    for value in values:
        func = getattr(value, "callable", None)  # unpack() and similar wrappers
        if func is None:
            func = getattr(getattr(value, "_file", None), "callable", None)  # flagged files
        if func is None:
            func = getattr(value, "_evaluator", None)  # a Resource computed per job
        if func is None and callable(value):
            func = value
        if inspect.isfunction(func):
            yield func


def cache_function_signatures(rules: Iterable[Any]) -> int:
    """Store the signature of every input, params and resources function on it.

    Snakemake calls ``inspect.signature`` on each such function once per job and call, to find
    which arguments (``wildcards``, ``input``, ``threads``...) it takes; with ``__signature__``
    set, ``inspect`` reads it instead of rebuilding it. This covers the rules' own functions,
    the default resources every rule gets (``tmpdir``; a profile's ``default-resources``, each
    parsed into a function) and ``Resource.evaluate``, through which Snakemake evaluates them.
    Call once every rule is defined.

    Returns:
        How many functions got their signature stored.
    """
    count = 0
    for rule in rules:
        resources = getattr(rule, "resources", None)
        values = [*getattr(rule, "input", ()), *getattr(rule, "params", ())]
        if hasattr(resources, "values"):
            values += list(resources.values())
        for func in _functions(values):
            if "__signature__" not in vars(func):
                func.__signature__ = inspect.signature(func)
                count += 1
    try:
        from snakemake.resources import Resource
    except ImportError:
        return count
    evaluate = getattr(Resource, "evaluate", None)
    if inspect.isfunction(evaluate) and "__signature__" not in vars(evaluate):
        evaluate.__signature__ = inspect.signature(evaluate)
        count += 1
    return count


def stop_reevaluation_timers() -> int:
    """Cancel the job scheduler's pending re-planning timers, once no job is left to run.

    Under ``--max-jobs-per-timespan N/Ts`` Snakemake's scheduler ends every scheduling round by
    starting a ``threading.Timer`` (not a daemon) that wakes it again after T seconds. When the
    last job has finished, the interpreter waits for those timers before the process exits: T
    seconds of idling at the end of every run, a minute with the local profile's 10000/60s (of
    ``make demo``, and of each workflow run in the tests). The Snakefile calls this from its
    ``onsuccess`` and ``onerror`` handlers, when Snakemake has stopped scheduling.

    Returns:
        How many timers were cancelled (0 on a Snakemake that schedules differently).
    """
    cancelled = 0
    for thread in threading.enumerate():
        function = getattr(thread, "function", None)
        if isinstance(thread, threading.Timer) and "._schedule_reevalutation." in getattr(
            function, "__qualname__", ""
        ):
            thread.cancel()
            cancelled += 1
    return cancelled


def memoize_source_uri_parsing() -> bool:
    """Memoize the URI parse behind Snakemake's script-source lookups.

    For every job of a ``script:`` rule, Snakemake 9 checks the script through its source cache,
    which derives a cache path from the script's location with ``smart_open.parse_uri`` three or
    four times per job; smart_open builds a new ``namedtuple`` class on every call (about 0.2 ms),
    so a 8,400-job plan spends seconds there. The parse is a pure function of the string and its
    result (a named tuple) is immutable, so caching it changes nothing else.

    Returns:
        Whether the cache was installed (False when it already was, or when this Snakemake has
        no ``snakemake.sourcecache.parse_uri``).
    """
    try:
        from snakemake import sourcecache
    except ImportError:
        return False
    parse = getattr(sourcecache, "parse_uri", None)
    if not callable(parse) or hasattr(parse, "cache_info"):
        return False
    sourcecache.parse_uri = functools.lru_cache(maxsize=4096)(parse)
    return True


def memoize_script_sources() -> bool:
    """Read each rule script once per Snakemake process instead of once per job.

    While planning, Snakemake checks every ``script:`` job's script by reading it through its
    source cache (``snakemake.script.get_source``: path formatting, cache lookup, open, read,
    language detection), about 5 % of a 2,000-patient dry run. Snakemake already snapshots each
    script in a per-run cache on first use, so within one process the answer for a path without
    wildcards never changes; this caches it per (path, base folder, source cache). Paths with
    ``{...}`` (wildcards or params in the script name) are passed through uncached.

    Returns:
        Whether the cache was installed (False when it already was, or when this Snakemake has
        no ``snakemake.script.get_source``).
    """
    try:
        from snakemake import script
    except ImportError:
        return False
    get_source = getattr(script, "get_source", None)
    if not callable(get_source) or getattr(get_source, "_hccrad_memoized", False):
        return False
    cache: dict[tuple[str, str, int], Any] = {}

    @functools.wraps(get_source)
    def cached(path: Any, sourcecache: Any, basedir: Any = None, *args: Any, **kwargs: Any) -> Any:
        text = str(getattr(path, "get_path_or_uri", lambda **_: path)(secret_free=True))
        if "{" in text:
            return get_source(path, sourcecache, basedir, *args, **kwargs)
        key = (text, str(basedir), id(sourcecache))
        if key not in cache:
            cache[key] = get_source(path, sourcecache, basedir, *args, **kwargs)
        return cache[key]

    cached._hccrad_memoized = True  # type: ignore[attr-defined]
    script.get_source = cached
    return True


#: Names a resource expression may use that differ from job to job.
_JOB_NAMES = frozenset({"wildcards", "input", "attempt", "threads", "rulename", "async_run"})


def _sized(name: str) -> bool:
    """Resources whose values Snakemake parses with units (left to Snakemake), except ``*_mb``
    given as a number (frozen as that number of megabytes)."""
    return name in {"mem", "disk", "runtime", "_cores", "_nodes"} or name.endswith("_mib")


def _job_independent(expression: str) -> bool:
    """Whether a resource expression gives the same value for every job of a process: no
    job-dependent name, no call, no environment variable or home folder to expand."""
    if "$" in expression or "~" in expression:
        return False
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        return True  # Snakemake then takes the text itself (e.g. n1-standard-4)
    nodes = list(ast.walk(tree))
    if any(isinstance(n, ast.Call | ast.Lambda | ast.NamedExpr) for n in nodes):
        return False
    return not {n.id for n in nodes if isinstance(n, ast.Name)} & _JOB_NAMES


def freeze_constant_resources(rules: Iterable[Any]) -> int:
    """Evaluate once the resources given as job-independent expressions.

    Resources from the command line or a profile (``default-resources: slurm_partition:
    "debug"``, Snakemake's own ``tmpdir=system_tmpdir``) reach every rule as Python expressions
    that Snakemake evaluates with ``eval`` for every job, each time building a fresh namespace;
    with the SLURM profile that was about 30 % of a 2,000-patient dry run. An expression that
    uses no job-dependent name (``wildcards``, ``input``, ``attempt``, ``threads``...), calls
    nothing and expands no environment variable has one value for every job, so it is evaluated
    here once (the same way Snakemake does) and stored as a constant with its original text
    (``raw``, which Snakemake passes on to cluster jobs). ``*_mb`` resources are frozen only as
    numbers; ``mem``, ``disk``, ``runtime`` and ``*_mib`` are left to Snakemake's unit handling.

    Returns:
        How many rule resources were frozen.
    """
    try:
        from snakemake.resources import Resource
    except ImportError:
        return 0
    evaluate = getattr(Resource, "cli_evaluator", None)
    if evaluate is None:
        return 0
    values: dict[tuple[str, str], Any] = {}
    count = 0
    for rule in rules:
        resources = getattr(rule, "resources", None)
        if not hasattr(resources, "items"):
            continue
        for name, resource in list(resources.items()):
            raw = getattr(resource, "raw", None)
            if not isinstance(raw, str) or _sized(name) or not _job_independent(raw):
                continue
            if not getattr(resource, "is_evaluable", lambda: False)():
                continue
            key = (name, raw)
            if key not in values:
                try:
                    values[key] = evaluate(
                        name, raw, wildcards=None, input=None, attempt=1, threads=1,
                        async_run=None,
                    )  # fmt: skip
                except Exception:  # left to Snakemake, which reports it per job
                    values[key] = None
            value = values[key]
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                continue
            if name.endswith("_mb"):  # megabytes: a number, standardised as Snakemake does
                if isinstance(value, str):
                    continue
                resources[name] = Resource(name, value, raw=raw).standardize_size()
            else:
                resources[name] = Resource(name, value, raw=raw)
            count += 1
    return count
