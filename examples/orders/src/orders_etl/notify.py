"""The example's failure hook."""

import sys


def alert(report):
    """Print which tasks failed; a real pipeline would page someone here."""
    failed = [name for name, t in report["tasks"].items() if t["status"] == "failed"]
    print(f"run {report['run_id']} failed: {', '.join(failed)}", file=sys.stderr)
