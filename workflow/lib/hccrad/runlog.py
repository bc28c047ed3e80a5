"""Logging set-up for workflow jobs: everything a job logs (and its error) goes to its log file."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def job_logging(
    log_file: str | Path | None, *, threads: int | None = None, level: int = logging.INFO
) -> Iterator[logging.Logger]:
    """Send the ``hccrad`` loggers to ``log_file`` (warnings also to stderr) for one job.

    ``threads`` caps the threads of ITK/ANTs/BLAS to what the rule declared.

    An exception raised inside the block is logged with its traceback, then re-raised so that
    Snakemake marks the job failed (and removes its outputs).
    """
    if threads is not None:
        limit_threads(threads)
    root = logging.getLogger()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)  # the log file has everything; the console only trouble
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    for h in handlers:
        h.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(h)
    old_level = root.level
    root.setLevel(level)
    logging.captureWarnings(True)
    logger = logging.getLogger("hccrad.job")
    try:
        yield logger
    except Exception:
        logger.exception("job failed")
        raise
    finally:
        for h in handlers:
            root.removeHandler(h)
            h.close()
        root.setLevel(old_level)
        logging.captureWarnings(False)


def limit_threads(n: int) -> None:
    """Cap the threads ITK, SimpleITK, ANTs and BLAS may use in this process to ``n``."""
    import os

    n = max(1, int(n))
    for var in (
        "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
    ):
        os.environ[var] = str(n)
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
