"""Everything that crosses the disk: marks read and validated into the click table
(``annotations``, with one private reader per format in ``_readers``), slides opened and read at
a target mpp (``slides``), instance tables written and read (``instances``: GeoParquet 1.1,
QuPath GeoJSON, label masks), whole-slide label TIFFs written tile by tile (``labels``), the
status vocabulary of the instance table (``status``) and the one atomic writer and file hash
(``files``). Pure functions elsewhere take and return arrays and
tables; they reach the disk through here.

May import: ``nuclick_core.errors`` only (never torch).
"""
