"""nuclick-wsi: NuClick instance segmentation from clicks and squiggles on whole slides."""

__version__ = "0.1.0"
