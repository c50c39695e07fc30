"""The images that training and evaluation use: the labelled-image type and its transforms
(``labelled``), dataset readers for common layouts (``datasets``), marks made from ground truth
(``marks``), cell canvases blended from segmented cells (``cell_canvases``), synthetic scenes
with exact ground truth (``synth``, drawing in ``synth_draw``), the demo images (``demo``) and
the simple seed detector that made the demo's clicks (``seeds``).

May import: ``nuclick_core.inference``, ``nuclick_core.io`` and ``nuclick_core.errors`` (never
torch, ``training`` or ``evaluation``).
"""
