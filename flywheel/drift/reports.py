"""A check's Evidently report, kept in the artifact store:

    <artifacts>/driftmonitors/<monitor>/reports/<UTC %Y%m%dT%H%M%SZ>/{report.html,report.json,summary.json}

report.html and report.json are Evidently's; summary.json is the check's own figures (drift share,
per-column scores and methods, rows). Each file is written atomically and summary.json last, so a
folder with a summary is complete. Writing the same check again (a retry after a crash) rewrites the
same folder with the same content.
"""

from __future__ import annotations

import dataclasses
import datetime
import json

from flywheel import artifacts
from flywheel.drift import checks

PLURAL = "driftmonitors"
REPORTS_DIR = "reports"
HTML_FILE = "report.html"
JSON_FILE = "report.json"
SUMMARY_FILE = "summary.json"


def folder(artifacts_uri: str, monitor: str, when: datetime.datetime) -> artifacts.Store:
    moment = when if when.tzinfo else when.replace(tzinfo=datetime.UTC)
    stamp = moment.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return artifacts.Store(artifacts_uri).child(PLURAL, monitor, REPORTS_DIR, stamp)


def write(artifacts_uri: str, monitor: str, when: datetime.datetime, result: checks.CheckResult) -> str:
    """Write the report files; return the folder's URI."""
    store = folder(artifacts_uri, monitor, when)
    store.write_bytes(HTML_FILE, result.html.encode())
    store.write_bytes(JSON_FILE, json.dumps(result.json).encode())
    summary = {
        "time": result.to_status(None, when)["lastCheckTime"],
        "driftShare": result.drift_share,
        "drifted": result.drifted,
        "rowsCurrent": result.rows_current,
        "rowsReference": result.rows_reference,
        "seconds": round(result.seconds, 3),
        "columns": [dataclasses.asdict(c) for c in result.columns],
    }
    store.write_bytes(SUMMARY_FILE, json.dumps(summary, indent=2).encode())  # last: marks it complete
    return store.uri
