"""Planning-time savings inside Snakemake itself, applied by the workflow's ``common.smk``.

Measured on the 2,000-patient dry run (``tests/bench/bench_dryrun.py``, ``docs/benchmarks.md``).
Each function changes no result: it only removes repeated work Snakemake does once per job while
it plans, and does nothing on a Snakemake whose internals differ from what it expects.
"""

from __future__ import annotations

import functools
import inspect
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
