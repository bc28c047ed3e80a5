"""Planning-time savings inside Snakemake: same results, installed once."""

from __future__ import annotations

import pytest

sourcecache = pytest.importorskip("snakemake.sourcecache")

from hccrad.snakemake_speedups import memoize_source_uri_parsing  # noqa: E402


def test_memoized_uri_parse_gives_the_same_results(monkeypatch):
    original = sourcecache.parse_uri
    monkeypatch.setattr(sourcecache, "parse_uri", original)  # restored after the test
    uris = [
        "/work/project/workflow/scripts/assign_habitats.py",
        "workflow/rules/../scripts/train_deep_model.py",
        "file:///tmp/x.py",
        "https://example.org/a/b.py",
    ]
    want = [original(u) for u in uris]
    assert memoize_source_uri_parsing() is True
    assert sourcecache.parse_uri is not original
    assert [sourcecache.parse_uri(u) for u in uris] == want
    assert [sourcecache.parse_uri(u) for u in uris] == want  # from the cache
    assert sourcecache.parse_uri.cache_info().hits == len(uris)
    assert memoize_source_uri_parsing() is False  # installed once
    # the source cache path Snakemake derives from it is unchanged
    local = sourcecache.LocalSourceFile(uris[0])
    monkeypatch.setattr(sourcecache, "parse_uri", original)
    plain = local.get_cache_path()
    memoize_source_uri_parsing()
    assert local.get_cache_path() == plain


def test_function_signatures_are_stored_once():
    import inspect
    from types import SimpleNamespace

    from hccrad.snakemake_speedups import cache_function_signatures

    def inp(wildcards):
        return []

    def par(wildcards, input, threads=1):
        return threads

    def ev(wildcards, attempt):
        return attempt

    unpacked = SimpleNamespace(callable=inp)  # as unpack() wraps a function
    resource = SimpleNamespace(_evaluator=ev)  # as a Resource computed per job
    rules = [
        SimpleNamespace(input=[unpacked, "a/file.txt"], params=[par, 3], resources={"r": resource}),
        SimpleNamespace(input=[unpacked], params=[], resources={}),  # shared function: once
    ]
    want = {f: inspect.signature(f) for f in (inp, par, ev)}
    stored = cache_function_signatures(rules)
    for f, sig in want.items():
        assert vars(f)["__signature__"] == sig and inspect.signature(f) == sig
    assert stored in (3, 4)  # + Resource.evaluate the first time in this process
    assert cache_function_signatures(rules) == 0
    from snakemake.resources import Resource

    assert "__signature__" in vars(Resource.evaluate)


def test_script_sources_are_read_once_per_path(tmp_path, monkeypatch):
    from snakemake import script
    from snakemake.sourcecache import SourceCache

    from hccrad.snakemake_speedups import memoize_script_sources

    monkeypatch.setattr(script, "get_source", script.get_source)  # restored after the test
    calls = []
    original = script.get_source

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(script, "get_source", counting)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "a.py").write_text("print('a')\n")
    cache = SourceCache(tmp_path / "cache")
    want = original("scripts/a.py", cache, str(tmp_path) + "/")
    assert memoize_script_sources() is True
    first = script.get_source("scripts/a.py", cache, str(tmp_path) + "/")
    again = script.get_source("scripts/a.py", cache, str(tmp_path) + "/")
    assert first[1:4] == want[1:4] == ("print('a')\n", "python", True)
    assert again is first and calls == ["scripts/a.py"]  # read once
    # a path with wildcards is formatted per job: never cached
    (tmp_path / "scripts" / "b_x.py").write_text("print('b')\n")
    from types import SimpleNamespace

    wild = script.get_source(
        "scripts/b_{wildcards.s}.py", cache, str(tmp_path) + "/", SimpleNamespace(s="x"), {}
    )
    assert wild[1] == "print('b')\n" and len(calls) == 2
    assert memoize_script_sources() is False  # installed once


def test_constant_resource_expressions_are_evaluated_once():
    import tempfile
    from types import SimpleNamespace

    from snakemake.resources import Resource

    from hccrad.snakemake_speedups import freeze_constant_resources

    exprs = {
        "slurm_partition": "debug",  # a bare word: Snakemake takes the text
        "slurm_account": "'lab_x'",
        "tmpdir": "system_tmpdir",
        "nodes_hint": "2 * 8",
        "machine": "n1-standard-4",  # Snakemake: NameError -> the text itself
        "per_attempt": "2 * attempt",  # job-dependent: left alone
        "from_input": "max(input.size_mb, 1)",  # a call on the input: left alone
        "home": "~/scratch",  # expanded by Snakemake: left alone
        "mem_mb": "2000",  # megabytes as a number: frozen
        "disk_mb": "max(2 * input.size_mb, 1000)",  # Snakemake's default: per job
        "mem": "'4 GB'",  # parsed with units: left to Snakemake
    }
    resources = {n: Resource.from_cli_expression(n, e) for n, e in exprs.items()}
    # what Snakemake computes for a job, before freezing
    job = dict(wildcards=SimpleNamespace(), input=SimpleNamespace(size_mb=5), attempt=3,
               threads=2, rulename="r", async_run=None)  # fmt: skip
    want = {n: r._evaluator(**job) for n, r in resources.items()}
    rules = [SimpleNamespace(resources=resources), SimpleNamespace(resources={})]
    assert freeze_constant_resources(rules) == 6
    frozen = {n for n, r in resources.items() if not r.is_evaluable()}
    assert frozen == {
        "slurm_partition", "slurm_account", "tmpdir", "nodes_hint", "machine", "mem_mb"
    }  # fmt: skip
    for name in frozen:
        assert resources[name].value == want[name] and resources[name].raw == exprs[name]
    assert want["tmpdir"] == tempfile.gettempdir() and want["machine"] == "n1-standard-4"
    assert want["nodes_hint"] == 16 and want["slurm_account"] == "lab_x"
    for name in set(exprs) - frozen:  # still evaluated per job
        assert resources[name]._evaluator(**job) == want[name]
    assert freeze_constant_resources(rules) == 0


def test_the_schedulers_reevaluation_timers_are_cancelled():
    """The timer Snakemake's scheduler starts after each round (here its own method on a
    stand-in scheduler) is cancelled and its thread ends; other timers are left alone."""
    import threading
    from types import SimpleNamespace

    from snakemake.scheduling.job_scheduler import JobScheduler

    from hccrad.snakemake_speedups import stop_reevaluation_timers

    scheduler = SimpleNamespace(_open_jobs=threading.Semaphore(0))
    JobScheduler._schedule_reevalutation(scheduler, 60)
    other = threading.Timer(60, lambda: None)
    other.start()
    try:
        timers = [t for t in threading.enumerate() if isinstance(t, threading.Timer)]
        assert len(timers) >= 2
        assert stop_reevaluation_timers() == 1
        for t in timers:
            if t is not other:
                t.join(timeout=5)
                assert not t.is_alive()
        assert other.is_alive()
        assert not scheduler._open_jobs.acquire(blocking=False)  # cancelled, never fired
        assert stop_reevaluation_timers() == 0
    finally:
        other.cancel()
