"""CSV import of deals (with their stage history), stage histories, leads, organizations and contacts.

The one implementation behind every door: `manage.py import_csv`, the Celery task `run_import_job`, and (later)
the API's `imports` resource and the upload page. A door creates an `ImportJob` and calls `run_import`, or calls
`import_csv` on a stream; `read_header` and `suggest_mapping` feed a mapping form.
"""

from pipeline.importing.fields import suggest_mapping, supported_kinds
from pipeline.importing.reading import FileProblem
from pipeline.importing.report import ImportOptions, ImportResult, RowError, write_report_csv
from pipeline.importing.runner import import_csv, read_header, run_import

__all__ = [
    "FileProblem",
    "ImportOptions",
    "ImportResult",
    "RowError",
    "import_csv",
    "read_header",
    "run_import",
    "suggest_mapping",
    "supported_kinds",
    "write_report_csv",
]
