"""nuclick-wsi: NuClick instance segmentation from clicks and squiggles on whole slides.

Subpackages by pipeline stage; imports run one way, from the top of this list down (each
``__init__`` says what it may import, and ``tests/test_structure.py`` checks it):

- ``cli``: the ``nuclick`` command; parsing and one library call per subcommand.
- ``registry``: the model registry and the promotion gate.
- ``training`` and ``evaluation`` (never each other): the network, samplers and loop (the only
  place torch is imported); metrics, baselines, evaluation runs and reports.
- ``data``: datasets, the labelled-image type, ground-truth marks, synthetic scenes, the demo.
- ``inference``: signals, patches, post-processing, stitching, the engine, models and ONNX
  Runtime sessions, and ``run``: one slide end to end.
- ``io``: marks in, slides, instance tables out, atomic writes, the status vocabulary.
- ``errors``: the typed exceptions, importable from everywhere.
"""

__version__ = "0.1.0"
