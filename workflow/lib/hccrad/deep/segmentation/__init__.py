"""Liver + tumor segmentation with a MONAI 3-D U-Net (train, segment, post-process, Dice).

Conventions (details and defaults in ``docs/segmentation.md``):

* **Grid.** Every image is resampled onto a cubic ``grid_size³`` grid that shares the image's
  direction and is centred on the centre of its field of view (FOV). The spacing is isotropic:
  ``grid_spacing_mm`` when given (the grid then covers ``grid_size * grid_spacing_mm`` mm and
  crops a larger FOV), otherwise the longest physical FOV side divided by ``grid_size`` (the whole
  FOV fits, shorter sides are padded). Images and masks are smoothed with a Gaussian before
  downsampling (anti-aliasing, variance ``(s_grid² - s_image²) / 4`` per axis) and resampled
  linearly; masks are thresholded at 0.5 afterwards.
* **Normalisation** (modality independent, MR and CT): on the grid voxels inside the FOV, clip to
  the ``clip_percentiles`` (default 0.5 and 99.5); the *body* is the Otsu foreground of the
  clipped FOV voxels (all FOV voxels when it holds < 5 % of them); z-score with the body's mean
  and standard deviation. Voxels outside the FOV get the normalised low clip value.
* **Labels.** 0 background, 1 liver, 2 tumor (the tumor mask overrides the liver mask).
* **Model.** ``monai.networks.nets.UNet`` (3-D, 1 input channel, 3 output classes), loss
  ``monai.losses.DiceCELoss`` (softmax, one-hot targets), Adam. Seeded flips and intensity
  scaling/shift as augmentation; a seeded held-out subset of the training cases gives the
  per-epoch validation Dice (on the grid, before post-processing).
* **Back to the image.** Class probabilities are resampled *linearly* onto the input image's grid,
  then arg-maxed (smoother boundaries than nearest-neighbour label resampling).
* **Post-processing.** liver = largest 6-connected component of labels {1, 2} (so the liver mask
  contains its tumors, like the cohort's given liver masks); tumor = the 6-connected label-2
  components with at least ``tumor_inside_fraction`` of their voxels inside the liver dilated by
  ``tumor_margin_mm``; ``index_tumor`` = the largest of them. Empty results are returned as empty
  masks with an :class:`EmptySegmentationWarning` (never an exception).

Modules: :mod:`~hccrad.deep.segmentation.config` (settings),
:mod:`~hccrad.deep.segmentation.grid` (cases on the training grid),
:mod:`~hccrad.deep.segmentation.metrics` (Dice), :mod:`~hccrad.deep.segmentation.net` (the
network; torch and MONAI are imported on first use, so importing this package stays fast),
:mod:`~hccrad.deep.segmentation.training` and :mod:`~hccrad.deep.segmentation.inference`.
Their public names are importable from here.
"""

from __future__ import annotations

from hccrad.deep.segmentation.config import CHECKPOINT_FORMAT, CLASSES, SegConfig
from hccrad.deep.segmentation.grid import (
    PreparedCase,
    SegCase,
    make_grid,
    normalize_on_grid,
    prepare_case,
)
from hccrad.deep.segmentation.inference import (
    EmptySegmentationWarning,
    SegModel,
    SegResult,
    evaluate,
    load_model,
    postprocess,
    predict_labels,
    segment,
)
from hccrad.deep.segmentation.metrics import dice
from hccrad.deep.segmentation.net import build_net
from hccrad.deep.segmentation.training import train_segmentation

__all__ = [
    "CHECKPOINT_FORMAT",
    "CLASSES",
    "EmptySegmentationWarning",
    "PreparedCase",
    "SegCase",
    "SegConfig",
    "SegModel",
    "SegResult",
    "build_net",
    "dice",
    "evaluate",
    "load_model",
    "make_grid",
    "normalize_on_grid",
    "postprocess",
    "predict_labels",
    "prepare_case",
    "segment",
    "train_segmentation",
]
