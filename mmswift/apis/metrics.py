"""The metrics a finished ``tools/test.py`` run left in its work dir."""
import glob
import json
import os.path as osp


def latest_test_metrics(work_dir: str) -> dict:
    """The metrics of the newest ``tools/test.py`` run into ``work_dir``: the
    ``<timestamp>/<timestamp>.json`` mmengine's test loop writes ({} if none)."""
    for path in sorted(glob.glob(osp.join(work_dir, '*', '*.json')), key=osp.getmtime)[::-1]:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return {}
