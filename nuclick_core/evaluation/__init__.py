"""Measuring models: metrics on label images behind one list of names (``metrics``, the GlaS
object metrics in ``object_metrics``, their shared contingency table in ``_overlap``), the
classical seeded baselines (``baselines``), evaluation runs on labelled images through the
engine (``evaluate``), mask stability under click jitter for slides without ground truth
(``stability``), outlines drawn on slides (``overlays``) and the HTML reports (``report``).

May import: ``nuclick_core.data``, ``nuclick_core.inference``, ``nuclick_core.io`` and
``nuclick_core.errors`` (never torch, ``training``, ``registry`` or ``cli``).
"""
