"""Segmentation from marks, with ONNX Runtime only: guiding signals and the network input
(``signals``), click patches planned by tile (``patches``), squiggle patches (``squiggles``),
post-processing of one patch (``postprocess``), overlap settlement (``stitch``), pixel-exact
outlines (``outline``), post-processing and polygons in worker processes (``workers``),
the two producers of patch instances (``producers``) and the streaming consumer (``engine``),
model folders, cards and the registry's current models (``models``), ONNX Runtime sessions
(``runtime``), one slide end to end as a library call (``run``), and point-labelled images to
a training folder (``convert``, finished by ``convert_finish``) with per-instance quality
flags (``quality``).

May import: ``nuclick_core.io`` and ``nuclick_core.errors`` (never torch, so a GPU node
segments without it).
"""
