"""The workflow on a real SLURM cluster: the local single-node cluster of
``tests/slurm/start_local_slurm.sh`` (Slurm with accounting) and ``config/profiles/slurm``.

Run as root (the script starts system daemons); ``.ci/run`` does, through ``make test-slurm``:

    .venv/bin/python -m pytest -m slurm tests/test_slurm.py

1. Centers A and B go through the whole DAG with ``--profile config/profiles/slurm``: every
   planned job is found in the log of a SLURM job that accounting (sacct) reports COMPLETED, and
   the outputs equal a local ``--cores 2`` run of the same sheets.
2. Fault tolerance: in a copy of that run, one patient's own outputs (those computed from the
   patient's data alone) are removed and rebuilt, the runs targeting them; the running SLURM
   job's processes are killed (the job fails, Snakemake resubmits it), then Snakemake is killed
   (SIGKILL) and the run's remaining jobs are cancelled; after ``--unlock`` a rerun completes
   and leaves exactly the local run's files.
3. Cohort growth (also marked ``slow``: ``make test-slurm`` leaves it out to keep CI short;
   ``tests/test_workflow.py`` checks the same plan with a local run): center C is added; the
   second run executes exactly C's jobs, the jobs that read the sheets, and what depends on
   them: every cohort-level job and, of the earlier patients, only the jobs that read a
   cohort-level output (``assign_habitats``: the cohort's reference habitats change).

"Equal" means: the same files under results/ (logs and benchmarks aside); the cohort tables
(radiomics, reader ICC, preprocessing summary, habitats) value for value; byte for byte every
per-patient output that does not depend on a cohort-level result (models trained on the cohort
see different thread counts in the two runs, so what they predict only has to exist).

Wall times are printed and, when ``HCCRAD_SLURM_REPORT`` names a file, written there as JSON.
When the cluster cannot start the tests fail with the reason; they never skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, RUN_SECONDS, job_counts, snakemake_command, write_sheets

pytestmark = pytest.mark.slurm

START = ROOT / "tests" / "slurm" / "start_local_slurm.sh"
PROFILE = ROOT / "config" / "profiles" / "slurm"
RUN_LIMIT = 1500  # seconds for one Snakemake run (wrapped in `timeout -k`)
# files that legitimately differ between runs: logs, benchmarks, SLURM's own output
SKIP_DIRS = ("logs", "benchmarks")
COHORT_TABLES = (
    "cohort/preprocess/summary.parquet",
    "cohort/radiomics/features.parquet",
    "cohort/radiomics/diagnostics.parquet",
    "cohort/radiomics/reader_icc.parquet",
    "cohort/habitats/features.parquet",
    "cohort/habitats/reference_habitats.parquet",
)
TIMES: dict[str, float] = {}


@dataclass
class Cluster:
    cpus: int
    mem_mb: int


@dataclass
class Run:
    workdir: Path
    output: str
    seconds: float
    returncode: int


def sh(*cmd: str, timeout: int = 60) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    assert res.returncode == 0, f"{' '.join(cmd)} failed: {res.stdout}{res.stderr}"
    return res.stdout


def start_cluster() -> Cluster:
    """The local cluster, started (idempotently) by the project's script; fails the test with
    the script's output when it cannot start."""
    if os.geteuid() != 0:
        pytest.fail("the slurm tests start a local SLURM cluster and must run as root")
    t0 = time.perf_counter()
    try:
        res = subprocess.run(
            ["timeout", "-k", "10", "900", "bash", str(START)],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as err:
        pytest.fail(f"cannot run {START}: {err}")
    if res.returncode != 0:
        pytest.fail(
            f"the local SLURM cluster did not start (exit {res.returncode}):\n"
            f"{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
        )
    TIMES.setdefault("cluster_start_s", time.perf_counter() - t0)
    cpus, mem = sh("sinfo", "-h", "-N", "-o", "%c %m").split()[:2]
    return Cluster(int(cpus), int(mem))


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    """The local cluster (see :func:`start_cluster`)."""
    return start_cluster()


def slurm_args(cluster: Cluster) -> list[str]:
    # The profile's `cores` and `resources` size a submission for a real node; this cluster's
    # node is small. A group job runs its jobs one at a time, so one CPU each lets two groups
    # share the node.
    return [
        "--cores",
        "1",
        "--resources",
        f"mem_mb={cluster.mem_mb}",
        "--slurm-keep-successful-logs",
        # The plugin waits this long before its first status check and again after every check
        # that saw a job finish, and 10 s longer after each that did not: on this one-node
        # cluster of short jobs the profile's 10 s is mostly idle waiting.
        "--slurm-init-seconds-before-status-checks",
        "2",
    ]


def snakemake_cmd(workdir: Path, sheets: tuple[Path, Path], *args: str) -> list[str]:
    cohort, clinical = sheets
    return [
        *("timeout", "-k", "15", str(RUN_LIMIT)),
        *snakemake_command(workdir, cohort, clinical, "--profile", str(PROFILE), *args),
    ]


def run_slurm(workdir: Path, sheets, cluster: Cluster, *args: str) -> Run:
    t0 = time.perf_counter()
    res = subprocess.run(
        snakemake_cmd(workdir, sheets, *slurm_args(cluster), *args),
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_LIMIT + 60,
    )
    return Run(workdir, res.stdout + res.stderr, time.perf_counter() - t0, res.returncode)


def dry_run(workdir: Path, sheets, cluster: Cluster, *targets: str) -> str:
    res = subprocess.run(
        [*snakemake_cmd(workdir, sheets, *slurm_args(cluster), *targets), "-n"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-4000:]
    return res.stdout + res.stderr


def job_blocks(text: str) -> set[tuple[str, frozenset]]:
    """(rule, wildcards) of every job block in Snakemake output (dry run, or a job's log)."""
    jobs: list[tuple[str, dict]] = []
    for line in text.splitlines():
        m = re.match(r"^\s*(?:local)?rule (\w+):\s*$", line)
        if m:
            jobs.append((m.group(1), {}))
            continue
        m = re.match(r"^\s*wildcards: (.*)$", line)
        if m and jobs and not jobs[-1][1]:
            jobs[-1][1].update(kv.split("=", 1) for kv in m.group(1).split(", "))
    return {(rule, frozenset(wc.items())) for rule, wc in jobs}


def job_fields(text: str) -> dict[tuple[str, frozenset], dict[str, str]]:
    """{(rule, wildcards): {"input": ..., "output": ..., "resources": ...}} of every job block
    in a dry run's output."""
    jobs: dict = {}
    rule, fields = None, {}

    def close():
        if rule is not None:
            wc = dict(kv.split("=", 1) for kv in fields.get("wildcards", "").split(", ") if kv)
            jobs[(rule, frozenset(wc.items()))] = fields

    for line in text.splitlines():
        m = re.match(r"^\s*(?:local)?rule (\w+):\s*$", line)
        if m:
            close()
            rule, fields = m.group(1), {}
            continue
        m = re.match(r"^\s*(input|output|wildcards|resources): (.*)$", line)
        if m and rule is not None:
            fields.setdefault(m.group(1), m.group(2))
    close()
    return jobs


def job_graph(text: str) -> dict[tuple[str, frozenset], tuple[set[str], set[str]]]:
    """{(rule, wildcards): (inputs, outputs)} of every job block in a dry run's output."""
    return {
        key: tuple(set(filter(None, f.get(k, "").split(", "))) for k in ("input", "output"))
        for key, f in job_fields(text).items()
    }


def gpu_jobs(text: str) -> set[tuple[str, frozenset]]:
    """Jobs of a dry run that request GPUs (resources: gpu=N > 0)."""
    return {
        key
        for key, f in job_fields(text).items()
        if int((re.search(r"\bgpu=(\d+)", f.get("resources", "")) or [0, 0])[1])
    }


def downstream(graph: dict, seeds: set) -> set:
    """The seed jobs and every job that (transitively) reads one of their outputs."""
    producer = {out: key for key, (_, outs) in graph.items() for out in outs}
    children: dict = {key: set() for key in graph}
    for key, (ins, _) in graph.items():
        for path in ins:
            if path in producer:
                children[producer[path]].add(key)
    found, todo = set(seeds), list(seeds)
    while todo:
        for child in children[todo.pop()]:
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def submissions(output: str) -> list[str]:
    """SLURM job ids of a run's submissions, from Snakemake's log."""
    return re.findall(r"has been submitted with SLURM jobid (\d+)", output)


def group_submissions(output: str) -> list[str]:
    """SLURM job ids of the run's per-patient group jobs."""
    return re.findall(r"has been submitted with SLURM jobid (\d+) \(log: \S*/group_patient", output)


def run_id(output: str) -> str:
    m = re.search(r"SLURM run ID: (\S+)", output)
    assert m, output[-3000:]
    return m.group(1)


def sacct_states(ids: list[str]) -> dict[str, tuple[str, str]]:
    """{job id: (job name, state)} from the accounting database."""
    out = sh("sacct", "-X", "-n", "-P", "-j", ",".join(ids), "--format=JobIDRaw,JobName,State")
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return {r[0]: (r[1], r[2]) for r in rows}


def assert_ran_through_slurm(run: Run, planned: set) -> None:
    """Every planned job but `all` is in the log of one of the run's SLURM jobs, and sacct
    reports each of those jobs COMPLETED under the run's name."""
    ids = submissions(run.output)
    assert ids, run.output[-3000:]
    states = sacct_states(ids)
    assert set(states) == set(ids), (ids, states)
    name = run_id(run.output)
    assert all(v == (name, "COMPLETED") for v in states.values()), states
    logdir = run.workdir / "results" / "logs" / "slurm"
    in_slurm: set = set()
    for sid in ids:
        logs = list(logdir.rglob(f"{sid}.log"))
        assert len(logs) == 1, (sid, logs)
        in_slurm |= job_blocks(logs[0].read_text())
    local = {job for job in planned if job[0] == "all"}
    assert in_slurm == planned - local
    # Snakemake itself ran only the target rule
    finished = re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", run.output)
    assert len(finished) == len(planned)
    assert re.findall(r"^\s*localrule (\w+):", run.output, flags=re.M) == ["all"]


def output_files(workdir: Path) -> dict[str, Path]:
    """Every file under results/ but logs and benchmarks."""
    base = workdir / "results"
    return {
        str(p.relative_to(base)): p
        for p in sorted(base.rglob("*"))
        if p.is_file() and p.relative_to(base).parts[0] not in SKIP_DIRS
    }


def with_listed_files(workdir: Path, out: str) -> list[str]:
    """A declared output and, for a per-patient manifest (hccrad.manifest), the files it lists."""
    files = [out]
    if out.endswith("/manifest.json") and (workdir / out).is_file():
        entries = json.loads((workdir / out).read_text()).get("files", {})
        if isinstance(entries, dict):  # (the audit's provenance manifest is another format)
            files += [e["path"] for e in entries.values() if isinstance(e, dict) and "path" in e]
    return files


def assert_same_outputs(workdir: Path, reference: Path, planned: str) -> None:
    """The same files as the reference run (nothing missing, nothing partial or extra left), the
    cohort tables value for value, and byte for byte every per-patient output computed from the
    patient's own data; what depends on cohort-level results (models trained on the cohort,
    whose thread counts differ between runs) only needs to exist."""
    for table in COHORT_TABLES:
        pd.testing.assert_frame_equal(
            pd.read_parquet(workdir / "results" / table),
            pd.read_parquet(reference / "results" / table),
            check_exact=True,
        )
    got, want = output_files(workdir), output_files(reference)
    assert sorted(got) == sorted(want)
    graph = job_graph(planned)
    cohort_level = {key for key in graph if "center" not in dict(key[1])}
    derived = tuple(
        f
        for key in downstream(graph, cohort_level)
        for out in graph[key][1]
        for f in with_listed_files(reference, out)
    )
    own = [
        name
        for name in want
        if not any(f"results/{name}" == d or f"results/{name}".startswith(f"{d}/") for d in derived)
    ]
    assert len(own) > 100
    differ = [n for n in own if got[n].read_bytes() != want[n].read_bytes()]
    assert not differ, differ


class FirstRun:
    """The first SLURM run (centers A and B, the whole DAG) in a background thread.

    ``conftest.slurm_head_start`` starts it when the session begins, if the session runs the
    slurm tests (``make test`` as root): most of the run's wall time is SLURM's submission and
    status-polling latency (the executor plugin sleeps 5 s before each ``sbatch``), which then
    overlaps the other tests instead of adding to them. ``wait`` returns what the fixture
    ``first_slurm_run`` used to compute itself (and re-raises its failure)."""

    def __init__(self, cohort_dir: Path, base: Path) -> None:
        self.cohort_dir, self.base = cohort_dir, base
        self.result: tuple[Run, str] | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="slurm-first-run", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            cluster = start_cluster()
            sheets = write_sheets(self.cohort_dir, self.base / "sheets_ab", centers=["A", "B"])
            work = self.base / "slurm"
            work.mkdir()
            planned = dry_run(work, sheets, cluster)
            run = run_slurm(work, sheets, cluster)
            TIMES["slurm_ab_s"] = run.seconds
            assert run.returncode == 0, run.output[-6000:]
            # the fault test starts from this state; the growth test changes the original
            shutil.copytree(work, self.base / "fault", symlinks=True)
            self.result = (run, planned)
        except BaseException as err:  # re-raised by wait, in the test
            self.error = err

    def wait(self) -> tuple[Run, str]:
        t0 = time.perf_counter()
        self.thread.join()
        TIMES["first_run_waited_s"] = time.perf_counter() - t0
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


@pytest.fixture(scope="module")
def head_start(slurm_head_start, cohort_dir, tmp_path_factory) -> FirstRun:
    """The session's background first run, or one started now (not root: it fails)."""
    if slurm_head_start is not None:
        return slurm_head_start
    return FirstRun(cohort_dir, tmp_path_factory.mktemp("slurm"))


@pytest.fixture(scope="module")
def base(head_start) -> Path:
    yield head_start.base
    if TIMES:
        print("\nSLURM timings (s):", json.dumps({k: round(v, 1) for k, v in TIMES.items()}))
        if os.environ.get("HCCRAD_SLURM_REPORT"):
            Path(os.environ["HCCRAD_SLURM_REPORT"]).write_text(json.dumps(TIMES, indent=2))


@pytest.fixture(scope="module")
def sheets_ab(head_start, base):
    head_start.wait()  # written by the first run
    return base / "sheets_ab" / "cohort.tsv", base / "sheets_ab" / "clinical.tsv"


@pytest.fixture(scope="module")
def local_ref(ab_run) -> Path:
    """The local ``--cores 2`` run of centers A and B (conftest.ab_run, shared with the workflow
    tests when they run in the same session, as ``make test`` does)."""
    if "ab_run" in RUN_SECONDS:
        TIMES["local_ab_cores2_s"] = RUN_SECONDS["ab_run"]
    return ab_run


@pytest.fixture(scope="module")
def first_slurm_run(head_start) -> tuple[Run, str]:
    return head_start.wait()


def test_whole_dag_runs_through_slurm(first_slurm_run, local_ref):
    run, planned = first_slurm_run
    jobs = job_blocks(planned)
    assert len(jobs) == job_counts(planned)["total"]
    assert_ran_through_slurm(run, jobs)
    # rules that declare `gpu` were submitted with --gpus and got the node's (fake) GPU
    allocated = sh(
        "sacct", "-X", "-n", "-P", "-j", ",".join(submissions(run.output)), "--format=AllocTRES"
    )
    assert allocated.count("gres/gpu=") == len(gpu_jobs(planned))
    assert_same_outputs(run.workdir, local_ref, planned)


def _wait(what: str, seconds: float, check):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"timed out after {seconds:.0f}s waiting for {what}")


def _running(ids: list[str]) -> list[str]:
    if not ids:
        return []
    out = sh("squeue", "-h", "-j", ",".join(ids), "-o", "%i %T")
    return [line.split()[0] for line in out.splitlines() if line.split()[1:] == ["RUNNING"]]


def _step_pids(jobid: str) -> list[int]:
    """Processes of the job's running steps (the srun'd Snakemake job), not its batch shell."""
    res = subprocess.run(
        ["scontrol", "listpids", jobid], capture_output=True, text=True, check=False
    )
    rows = [line.split() for line in res.stdout.splitlines()[1:]]
    return [int(r[0]) for r in rows if len(r) >= 3 and r[1] == jobid and r[2].isdigit()]


def _kill_steps(jobid: str) -> bool:
    pids = _step_pids(jobid)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return bool(pids)


def test_killed_job_and_snakemake_recover(cluster, first_slurm_run, local_ref, base, sheets_ab):
    """A job dies (its processes are killed, as by the OOM killer), Snakemake resubmits it;
    then Snakemake itself is killed. (`scancel` is not used on the job: plugin 2.6.1 reads
    sacct's "CANCELLED by <uid>" as still running and would wait for it forever.)

    The runs target the patient's own outputs: rebuilding them byte for byte leaves every
    cohort-level result as it was, and skipping the cohort-level reruns keeps the test short."""
    work = base / "fault"
    patient = work / "results" / "B" / "BCT001"
    assert patient.is_dir()
    graph = job_graph(first_slurm_run[1])
    # the outputs, kept after the run (not temporary), of the patient's jobs that read no
    # cohort-level result
    derived = downstream(graph, {key for key in graph if "center" not in dict(key[1])})
    targets = sorted(
        out
        for key, (_, outs) in graph.items()
        if dict(key[1]).get("patient") == "BCT001" and key not in derived
        for out in outs
        if out.startswith("results/B/BCT001/") and (work / out).exists()
    )
    assert len(targets) >= 4
    # what a cohort-level result made (e.g. predicted masks) stays; a manifest goes with the
    # files it lists
    listed = [f for target in targets for f in with_listed_files(work, target)[::-1]]
    for out in dict.fromkeys(listed):  # a manifest may list a declared output (qc.png)
        path = work / out
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    log = work / "killed_run.log"
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(
            snakemake_cmd(work, sheets_ab, *slurm_args(cluster), *targets),
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # a SLURM job of this run is running and has written part of the patient's outputs
        running = _wait(
            "the patient's group job to run and write outputs",
            600,
            lambda: (
                list(patient.rglob("register/image.nii.gz"))
                and _running(group_submissions(log.read_text()))
            ),
        )
        killed = running[0]
        n_before = len(group_submissions(log.read_text()))
        _wait("a running step of the job to kill", 120, lambda: _kill_steps(killed))
        # Snakemake sees the job fail and resubmits it (retries: 1)
        again = _wait(
            "the failed job's resubmission to run",
            400,
            lambda: _running(group_submissions(log.read_text())[n_before:]),
        )
        time.sleep(5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    name = run_id(log.read_text())
    # what a user does after losing the Snakemake process: cancel its jobs, unlock, rerun
    sh("scancel", "--name", name)
    _wait(
        "the killed run's jobs to leave the queue",
        120,
        lambda: not sh("squeue", "-h", "--name", name, "-o", "%i").strip(),
    )
    TIMES["fault_killed_after_s"] = time.perf_counter() - t0
    states = sacct_states([killed, *again])
    assert states[killed][1] == "FAILED", states
    assert all(states[i][1].startswith("CANCELLED") for i in again), states
    incomplete = list((work / ".snakemake" / "incomplete").glob("*"))
    unlock = subprocess.run(
        [*snakemake_cmd(work, sheets_ab), "--unlock"], capture_output=True, text=True, check=False
    )
    assert unlock.returncode == 0, unlock.stderr[-3000:]
    rerun = run_slurm(work, sheets_ab, cluster, *targets)
    TIMES["fault_rerun_s"] = rerun.seconds
    assert rerun.returncode == 0, rerun.output[-6000:]
    assert incomplete, "the killed run left no incomplete outputs to recover"
    assert not list((work / ".snakemake" / "incomplete").glob("*"))
    assert "Nothing to be done" in dry_run(work, sheets_ab, cluster, *targets)
    # no partial file survives: exactly the local run's files
    assert_same_outputs(work, local_ref, first_slurm_run[1])


@pytest.mark.slow  # 7 min; make test-slurm skips it, `pytest -m slurm tests/test_slurm.py` runs it
def test_adding_a_center_reruns_only_its_jobs(cluster, first_slurm_run, cohort_dir, base):
    first, _ = first_slurm_run
    work = first.workdir
    sheets = write_sheets(cohort_dir, base / "sheets_abc")
    fresh = base / "fresh_abc"
    fresh.mkdir()
    graph = job_graph(dry_run(fresh, sheets, cluster))
    new = {key for key in graph if dict(key[1]).get("center") == "C"}
    assert new
    # jobs that read the sheets themselves (the clinical table, e.g. for the studies' splits)
    readers = {key for key, (ins, _) in graph.items() if {str(p) for p in sheets} & ins}
    # C's jobs, the sheets' readers and everything downstream of them: every cohort-level job,
    # and the earlier patients' jobs that read a cohort-level output (assign_habitats: the
    # cohort's reference habitats change; models trained on the cohort predict again)
    want = downstream(graph, new | readers)
    planned_text = dry_run(work, sheets, cluster)
    planned = job_blocks(planned_text)
    assert job_counts(planned_text)["total"] == len(planned)
    assert planned == want, (sorted(planned - want), sorted(want - planned))
    assert {key for key in graph if "center" not in dict(key[1])} <= planned
    old = {key for key in planned if dict(key[1]).get("center", "C") != "C"}
    rerun_old = {rule for rule, _ in old}
    assert "assign_habitats" in rerun_old
    old_outputs = set().union(*(graph[key][1] for key in old))
    for key in old:
        inputs = graph[key][0]
        assert any(p.startswith("results/cohort/") or p in old_outputs for p in inputs), key
    print(f"\nearlier patients' jobs rerun after adding center C: {sorted(rerun_old)}")

    run = run_slurm(work, sheets, cluster)
    TIMES["slurm_add_center_s"] = run.seconds
    TIMES["growth_ratio"] = run.seconds / first.seconds
    assert run.returncode == 0, run.output[-6000:]
    assert_ran_through_slurm(run, planned)
    assert "Nothing to be done" in dry_run(work, sheets, cluster)
    table = pd.read_parquet(work / "results/cohort/preprocess/summary.parquet")
    sheet = pd.read_csv(sheets[0], sep="\t", dtype=str)
    assert set(table["patient"]) == set(sheet["patient"])
