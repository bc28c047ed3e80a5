"""``hccrad voxelmaps``: voxel-level radiomics feature maps of one image and mask."""

from __future__ import annotations

import argparse
import logging

from hccrad.voxelmaps import IMPLEMENTED_CLASSES, VoxelMapSettings, write_voxel_maps

log = logging.getLogger("hccrad")


def run_voxelmaps(args: argparse.Namespace) -> int:
    """Compute and write the maps of one image (``hccrad voxelmaps``)."""
    classes = tuple(args.classes) if args.classes else IMPLEMENTED_CLASSES
    settings = VoxelMapSettings(
        kernel_radius=args.kernel_radius,
        bin_width=args.bin_width if args.bin_width is not None else 25.0,
        bin_count=args.bin_count,
        classes=classes,
        n_jobs=args.jobs,
    )
    written = write_voxel_maps(args.image, args.mask, args.out, settings, engine=args.engine)
    log.info("wrote %d maps and voxels.parquet to %s", len(written) - 1, args.out)
    return 0
