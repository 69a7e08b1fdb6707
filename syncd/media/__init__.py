"""Removable media: export volumes for a site with no link, import them there in any
order, and carry the far side's receipt back (docs/DESIGN.md, Removable media).

The formats are protocol/media.py's; this package does the I/O and the bookkeeping:
what the far side lacks (from a receipt, with the push's descent), volumes within size
limits, verified imports staged and applied exactly as a push's.
"""
