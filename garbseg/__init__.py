"""garbseg: see, measure and present how well and how fast segmentation networks find garbage."""

__version__ = "0.1.0"
