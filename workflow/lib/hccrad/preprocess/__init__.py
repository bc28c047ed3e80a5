"""Per-image preprocessing: resampling, N4, rigid registration, normalisation, regions.

Registration imports antspyx lazily (inside :func:`register_rigid`), so importing this package
stays fast.
"""

from hccrad.preprocess.bias import n4_correct
from hccrad.preprocess.normalize import normalize_mr, otsu_foreground, window_ct
from hccrad.preprocess.regions import (
    count_components,
    largest_component,
    mask_stats,
    peritumoral_ring,
)
from hccrad.preprocess.register import (
    METHODS,
    RegistrationError,
    apply_transform,
    image_similarity,
    read_transform,
    register_rigid,
    write_transform,
)
from hccrad.preprocess.resample import resample_like, resample_to_spacing, round_image

__all__ = [
    "METHODS",
    "RegistrationError",
    "apply_transform",
    "count_components",
    "image_similarity",
    "largest_component",
    "mask_stats",
    "n4_correct",
    "normalize_mr",
    "otsu_foreground",
    "peritumoral_ring",
    "read_transform",
    "register_rigid",
    "resample_like",
    "resample_to_spacing",
    "round_image",
    "window_ct",
    "write_transform",
]
