"""Deep learning: input tensors, MONAI networks, training, deep features, MIL and Grad-CAM.

Modules:

* :mod:`hccrad.deep.inputs` — per-patient input tensors (``.npz``) from a registered image and a
  region mask: largest cross-section ± neighbours, explicit slice offsets (MIL), k largest slices x
  phases, 3-D cubes.
* :mod:`hccrad.deep.mil` — multi-instance patient features: predicted-likelihood histograms and
  bag-of-words with TF-IDF weighting.
* :mod:`hccrad.deep.split_metrics` — a model's own AUC (CI), accuracy, sensitivity, specificity
  per split from its predictions (per slice for MIL models; no torch).
* :mod:`hccrad.deep.nets`, :mod:`hccrad.deep.train`, :mod:`hccrad.deep.extract`,
  :mod:`hccrad.deep.gradcam` — networks (MONAI; no torchvision), seeded training, frozen-backbone
  features and Grad-CAM / Score-CAM overlays; :mod:`hccrad.deep.train_config` (training settings
  and study presets), :mod:`hccrad.deep.dataset` (the ``.npz`` dataset) and
  :mod:`hccrad.deep.curves` (training curves) serve the training.
* :mod:`hccrad.deep.device` — the torch device of a ``device`` setting (``auto``, ``cpu``,
  ``cuda[:N]``), shared by the classifiers and the U-Net.
* :mod:`hccrad.deep.segmentation` — MONAI 3-D U-Net for liver + tumor (training, inference with
  post-processing to the liver and the index lesion, Dice); a package that imports torch only
  when a network is built or run.

Input tensor contract (``.npz`` written by :mod:`hccrad.deep.inputs`): ``x`` float32 of shape
``(N, C, H, W)`` for slice inputs (``N`` instances — slices or slice stacks — of ``C`` channels) or
``(C, D, H, W)`` for volumes; ``kind`` (``"slices"`` or ``"volume"``); ``z`` the axial indices used
(slices only; -1 for padding outside the volume); ``offsets``; and ``meta`` (a JSON string:
patient, phase(s), region, spacing, crop box).
"""
