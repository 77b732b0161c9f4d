"""Clinical reading: reference tables, per-measurement flags and per-study findings (decision support).

- :mod:`pipeline.reference.tables` -- the table rows as frozen dataclasses;
- :mod:`pipeline.reference.loading` -- YAML loading and validation (``configs/reference/``);
- :mod:`pipeline.reference.patient` -- covariates and device identity from an image header;
- :mod:`pipeline.reference.flags` -- flag and z-score of one value;
- :mod:`pipeline.reference.findings` -- per-study derived values (``findings.csv``);
- :mod:`pipeline.reference.keys` -- matching readings to SR content items.

Everything here is a pure function of its arguments: the tables are loaded once by the
entry point and passed in.
"""

from pipeline.reference.findings import (
    FINDING_COLUMNS,
    SiteValue,
    StudyFinding,
    finding_cells,
    site_values,
    study_findings,
)
from pipeline.reference.flags import DECISION_SUPPORT_NOTE, Flag, ReferenceReading, read_row, read_value
from pipeline.reference.keys import ReadingKey, readings_for_rows
from pipeline.reference.loading import DEFAULT_REFERENCE_DIR, load_reference_tables
from pipeline.reference.patient import Covariates, DeviceIdentity, covariates_from_header, device_from_header
from pipeline.reference.tables import ReferenceTables

__all__ = [
    "DECISION_SUPPORT_NOTE",
    "DEFAULT_REFERENCE_DIR",
    "FINDING_COLUMNS",
    "Covariates",
    "DeviceIdentity",
    "Flag",
    "ReadingKey",
    "ReferenceReading",
    "ReferenceTables",
    "SiteValue",
    "StudyFinding",
    "covariates_from_header",
    "device_from_header",
    "finding_cells",
    "load_reference_tables",
    "read_row",
    "read_value",
    "readings_for_rows",
    "site_values",
    "study_findings",
]
