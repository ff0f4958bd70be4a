"""A torchrun worker that records what torchrun gave it (no torch import: it only reads env)."""

import json
import os
from pathlib import Path

keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")
out = Path(os.environ["PROBE_DIR"]) / f"rank-{os.environ['RANK']}.json"
out.write_text(json.dumps({k: os.environ.get(k) for k in keys}))
