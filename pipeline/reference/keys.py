"""Which reading belongs to which value: the key shared by the tables and the SR builder."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from pipeline.analysis import MeasurementRow
from pipeline.reference.flags import ReferenceReading, read_row
from pipeline.reference.patient import Covariates, DeviceIdentity
from pipeline.reference.tables import ReferenceTables

__all__ = ["ReadingKey", "readings_for_rows"]


@dataclass(frozen=True)
class ReadingKey:
    """A value of one image frame: SOP Instance UID, 1-based frame, structure (as in the rows) and measurement."""

    sop_instance_uid: str
    frame: int
    structure: str
    measurement: str

    @classmethod
    def of(cls, row: MeasurementRow) -> ReadingKey:
        return cls(row.sop_instance_uid, int(row.frame), row.structure, row.measurement)


def readings_for_rows(
    rows: Iterable[MeasurementRow],
    tables: ReferenceTables,
    *,
    device: DeviceIdentity | None = None,
    covariates: Covariates | None = None,
) -> Mapping[ReadingKey, ReferenceReading]:
    """The reading of every row with a measurement name (refused frame rows without one are skipped)."""
    out = {
        ReadingKey.of(row): read_row(row, tables, device=device, covariates=covariates)
        for row in rows
        if row.measurement
    }
    return MappingProxyType(out)
