"""The reliability and security campaign: crashes, power loss, corruption, hostile input.

Run by hand (`python -m reliability --help`); CI runs a short seeded slice of each
campaign through tests/test_reliability_*.py. Each campaign is a module exposing
`run(ctx: Context) -> Outcome`; `python -m reliability` runs them and writes their
figures to reliability/results/ and docs/RELIABILITY.md's tables.
"""
