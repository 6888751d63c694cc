"""A job as the `jobs` table holds it: its place in columns, its ImageSpec as JSON in `spec`.

Rows written before the spec existed hold the old flat Job fields in `spec`; `ImageSpec.from_dict`
reads those too (it keeps the fields it knows), so old queues resume unchanged.
"""

from __future__ import annotations

import json
import sqlite3

from studio.core.jobs import Job
from studio.core.spec import ImageSpec

JOB_COLUMNS = "j.id, j.request_id, j.idx, j.output_path, j.spec"  # what `job_from_row` reads (alias j)


def spec_json(spec: ImageSpec) -> str:
    return json.dumps(spec.to_dict(), ensure_ascii=False)


def job_from_row(row: sqlite3.Row) -> Job:
    return Job(job_id=row["id"], request_id=row["request_id"], index=row["idx"], output_path=row["output_path"],
               spec=ImageSpec.from_dict(json.loads(row["spec"])))
