"""Pure per-kind logic: plan(resource, observed, now) -> Plan, and render_* builders of children.

No I/O, no kopf, no kubernetes client, no torch: both backends call this code.
"""
