"""Training with PyTorch: the NuClick network with a width multiplier (``network``), the
paper's augmentations (``augment``), the sample builders (``click_patches`` for nuclei and
cells, ``gland_patches`` for squiggle-guided glands), the loss and the resumable loop
(``train``), function-preserving widening (``widen``), export to ONNX with a parity check
(``export``), the training recipe (``recipe``, no torch: the CLI builds its parser from it)
and a recipe run end to end (``run``).

May import: ``nuclick_core.data``, ``nuclick_core.inference``, ``nuclick_core.io`` and
``nuclick_core.errors`` (never ``evaluation``, ``registry`` or ``cli``). The only subpackage that
imports torch.
"""
