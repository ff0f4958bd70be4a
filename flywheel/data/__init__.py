"""The data layer: DVC resolution with lineage (resolve), the Great Expectations gate (gate), and an
example DVC repository built from a real dataset with a real shift between periods (examples)."""
