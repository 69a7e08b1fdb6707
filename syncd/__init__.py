"""syncd: verified, differential sync of oc-mirror caches and content trees."""

__version__ = "0.1.0"
