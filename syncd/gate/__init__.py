"""The far side's gate before an apply: what is about to change, an optional inspection
command that may refuse it, and the audit log that records every apply and refusal.

Both ways content reaches a far side go through it: `syncd import` (importer.py) and
`syncd serve` (session/server.py) call `gated_apply` where they used to call the apply.
"""
