"""Absolute-Zero-style self-play: a policy proposes programs and solves them, rewarded by a sandbox.

`executor` runs every model-written program in jailed worker processes; the rest of the package
(tasks, buffers, rewards, TRR++, trainer) never executes model text itself.
"""
