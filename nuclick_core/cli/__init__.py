"""The ``nuclick`` command line: argument parsing and one library call per subcommand.

``main`` builds the parser (``slides``: segment, stability, overlay, run-report, exports,
fetch-demo, detect-seeds; ``training``: train, export, evaluate, promote; ``options``: flags
several commands share) and prints :class:`~nuclick_core.errors.NuclickError` messages without a
traceback. No library logic lives here. May import every other part of the package.
"""
