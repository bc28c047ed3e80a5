"""``hccrad ibsi``: one IBSI-1 configuration through the project's processing and extraction."""

from __future__ import annotations

import argparse
import logging

from hccrad.ibsi import (
    CT_CONFIGS,
    CT_REFERENCE_CSV,
    PHANTOM_CONFIG,
    compare_runs,
    extract_config,
    ibsi_values,
    read_ct_reference,
    read_image_and_mask,
    summarize,
    write_values,
)

log = logging.getLogger("hccrad")

#: ``--config`` choices: the CT phantom's A-E and the digital phantom's (no processing).
CONFIG_CHOICES = (*CT_CONFIGS, PHANTOM_CONFIG.name)


def run_ibsi(args: argparse.Namespace) -> int:
    """Process, extract and write ``tag``/``value`` rows (``hccrad ibsi``).

    With ``--check`` (CT configurations only) the values are also compared with IBSI's
    reference values; the comparison goes to ``<out stem>.check.tsv`` and the counts to the log.
    """
    config = CT_CONFIGS.get(args.config, PHANTOM_CONFIG)
    image, mask = read_image_and_mask(args.image, args.mask)
    runs = extract_config(image, mask, config)
    values = ibsi_values(runs)
    write_values(values, args.out)
    log.info("configuration %s: wrote %d IBSI values to %s", config.name, len(values), args.out)
    if args.check:
        if args.config not in CT_CONFIGS:
            log.error("--check needs a CT configuration (%s)", ", ".join(CT_CONFIGS))
            return 2
        table = compare_runs(
            runs, read_ct_reference(args.reference or CT_REFERENCE_CSV, args.config)
        )
        path = args.out.with_name(args.out.stem + ".check.tsv")
        table.to_csv(path, sep="\t", index=False)
        counts = summarize(table)
        log.info(
            "configuration %s: %d mapped, %d pass, %d fail (%s)",
            config.name,
            counts["mapped"],
            counts["passed"],
            counts["deviations"],
            path,
        )
    return 0
