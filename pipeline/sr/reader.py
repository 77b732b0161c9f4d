"""Read the measurements of any TID 1500 Structured Report (ours or another vendor's).

The reader walks the content tree generically rather than assuming our own
layout: it finds every Measurement Group container (DCM 125007) wherever it
is, and in each the tracking identifiers, finding, finding sites (with
laterality), spatial coordinates (SCOORD / SCOORD3D, with the referenced
image and frames), source images, numeric items (concept, value, unit,
derivation, qualifier) and TEXT / CODE evaluations. NUM items outside any
group, TEXT items at document level and the Image Library are reported too.

Results are small frozen dataclasses; :meth:`MeasurementReport.to_dict`
gives plain JSON-ready data.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

import pydicom
from pydicom.dataset import Dataset

from pipeline.errors import MskusInputError
from pipeline.sr import codes
from pipeline.sr.codes import concept_key
from pipeline.sr.walk import children, code_key, descends, flatten, item_key, value_type

__all__ = [
    "AlgorithmIdentification",
    "CodedValue",
    "FindingSite",
    "ImageReference",
    "MeasurementGroup",
    "MeasurementReport",
    "NotStructuredReportError",
    "NumericMeasurement",
    "SpatialCoordinates",
    "TemporalCoordinates",
    "TextObservation",
    "VerifyingObserver",
    "read_measurement_report",
]


class NotStructuredReportError(MskusInputError):
    """The file or dataset is not a readable DICOM Structured Report."""

    code = "not_sr"


# Concept names the reader recognises (scheme designator, code value).
_MEASUREMENT_GROUP = concept_key(codes.MEASUREMENT_GROUP)
_IMAGE_LIBRARY = concept_key(codes.IMAGE_LIBRARY)
_TRACKING_ID = concept_key(codes.TRACKING_IDENTIFIER)
_TRACKING_UID = concept_key(codes.TRACKING_UNIQUE_IDENTIFIER)
_FINDING = concept_key(codes.FINDING)
_FINDING_CATEGORY = concept_key(codes.FINDING_CATEGORY)
_FINDING_SITE = concept_key(codes.FINDING_SITE)
_LATERALITY = concept_key(codes.LATERALITY)
_TOPOGRAPHICAL_MODIFIER = concept_key(codes.TOPOGRAPHICAL_MODIFIER)
_DERIVATION = concept_key(codes.DERIVATION)
_METHOD = concept_key(codes.MEASUREMENT_METHOD)
_NORMALITY = concept_key(codes.NORMALITY)
_NORMAL_RANGE_LOWER = concept_key(codes.NORMAL_RANGE_LOWER_LIMIT)
_NORMAL_RANGE_UPPER = concept_key(codes.NORMAL_RANGE_UPPER_LIMIT)
_NORMAL_RANGE_DESCRIPTION = concept_key(codes.NORMAL_RANGE_DESCRIPTION)
_POPULATION_MEAN = concept_key(codes.MEAN_VALUE_OF_POPULATION)
_POPULATION_SD = concept_key(codes.STANDARD_DEVIATION_OF_POPULATION)
_Z_SCORE = concept_key(codes.Z_SCORE)
_PROCEDURE_REPORTED = concept_key(codes.PROCEDURE_REPORTED)
_ALGORITHM_NAME = concept_key(codes.ALGORITHM_NAME)
_ALGORITHM_VERSION = concept_key(codes.ALGORITHM_VERSION)
_ALGORITHM_PARAMETERS = concept_key(codes.ALGORITHM_PARAMETERS)
_DEVICE_OBSERVER_UID = concept_key(codes.DEVICE_OBSERVER_UID_CONCEPT)
_DEVICE_OBSERVER_NAME = concept_key(codes.DEVICE_OBSERVER_NAME)
_DEVICE_OBSERVER_MODEL = concept_key(codes.DEVICE_OBSERVER_MODEL_NAME)


@dataclass(frozen=True)
class CodedValue:
    """A coded concept: value, scheme designator and meaning."""

    value: str
    scheme: str
    meaning: str

    @property
    def key(self) -> tuple[str, str]:
        """(scheme, value) with legacy SNOMED designators normalised (:func:`pipeline.sr.walk.code_key`)."""
        return code_key(self.scheme, self.value)

    def matches(self, code: Any) -> bool:
        """Same concept as a pydicom/highdicom code (or another CodedValue)."""
        scheme = getattr(code, "scheme_designator", None) or getattr(code, "scheme", "")
        other = CodedValue(str(code.value), str(scheme), "")
        return self.key == other.key

    def __str__(self) -> str:
        return self.meaning or f"({self.value}, {self.scheme})"


@dataclass(frozen=True)
class ImageReference:
    """A referenced image instance (and frames, 1-based; empty = whole image)."""

    sop_class_uid: str
    sop_instance_uid: str
    frame_numbers: tuple[int, ...] = ()


@dataclass(frozen=True)
class SpatialCoordinates:
    """A SCOORD (2D image pixels) or SCOORD3D (patient mm) region.

    ``points`` are as stored: (column, row) pairs with the top-left corner of
    the top-left pixel at (0, 0) for SCOORD; (x, y, z) for SCOORD3D.
    """

    concept: CodedValue | None
    graphic_type: str
    points: tuple[tuple[float, ...], ...]
    image: ImageReference | None = None
    frame_of_reference_uid: str = ""

    @property
    def is_3d(self) -> bool:
        return bool(self.points) and len(self.points[0]) == 3


@dataclass(frozen=True)
class TemporalCoordinates:
    """A TCOORD: when, in a referenced image or waveform (PS3.3 C.18.7).

    ``time_offsets_s`` are Referenced Time Offsets (s from the start of the
    referenced data); ``sample_positions`` Referenced Sample Positions;
    ``image`` the referenced image (and frames) it is SELECTED FROM.
    """

    concept: CodedValue | None
    range_type: str
    time_offsets_s: tuple[float, ...] = ()
    sample_positions: tuple[int, ...] = ()
    image: ImageReference | None = None


@dataclass(frozen=True)
class FindingSite:
    """An anatomic location with its optional laterality and modifier."""

    site: CodedValue
    laterality: CodedValue | None = None
    modifier: CodedValue | None = None


@dataclass(frozen=True)
class AlgorithmIdentification:
    """TID 4019 content: algorithm name, version and parameters."""

    name: str
    version: str
    parameters: tuple[str, ...] = ()


@dataclass(frozen=True)
class NumericMeasurement:
    """One NUM content item.

    ``value`` is ``None`` when the item carries no value (a Numeric Value
    Qualifier then usually says why). The Floating Point Value is preferred
    over the decimal string when both are present.
    """

    name: CodedValue
    value: float | None
    unit: CodedValue | None
    derivation: CodedValue | None = None
    qualifier: CodedValue | None = None
    method: CodedValue | None = None
    finding_sites: tuple[FindingSite, ...] = ()
    coordinates: tuple[SpatialCoordinates, ...] = ()
    images: tuple[ImageReference, ...] = ()
    #: TCOORD children (e.g. the time of a fasciculation in its clip).
    temporal: tuple[TemporalCoordinates, ...] = ()
    #: Other NUM children (e.g. a fasciculation's duration, peak speed and confidence, HAS PROPERTIES).
    nested: tuple[NumericMeasurement, ...] = ()
    #: TID 310 Normality (Normal / Abnormally High / Abnormally Low ...), when given.
    normality: CodedValue | None = None
    #: TID 312 Normal Range limits and description, when given.
    normal_range_low: float | None = None
    normal_range_high: float | None = None
    normal_range_description: str = ""
    #: TID 311: z-score of the value and the population mean and SD it was computed from.
    z_score: float | None = None
    population_mean: float | None = None
    population_sd: float | None = None

    @property
    def label(self) -> str:
        """Concept meaning plus derivation and method, e.g. ``"Echogenicity (Mean)"``,
        ``"Thickness (Mean, central half of width)"``."""
        modifiers = [str(c) for c in (self.derivation, self.method) if c is not None]
        return f"{self.name} ({', '.join(modifiers)})" if modifiers else str(self.name)


@dataclass(frozen=True)
class TextObservation:
    """A TEXT (or CODE, then ``code`` is set) evaluation: concept name and value."""

    name: CodedValue
    value: str
    code: CodedValue | None = None


@dataclass(frozen=True)
class MeasurementGroup:
    """One Measurement Group container (TID 1410 / 1411 / 1501 or other)."""

    template_id: str
    tracking_identifier: str | None
    tracking_uid: str | None
    finding: CodedValue | None
    finding_category: CodedValue | None
    finding_sites: tuple[FindingSite, ...]
    regions: tuple[SpatialCoordinates, ...]
    source_images: tuple[ImageReference, ...]
    measurements: tuple[NumericMeasurement, ...]
    evaluations: tuple[TextObservation, ...]
    algorithm: AlgorithmIdentification | None = None

    @property
    def images(self) -> tuple[ImageReference, ...]:
        """Every image the group refers to (regions, source images, measurements)."""
        seen: list[ImageReference] = []
        for ref in (
            *(r.image for r in self.regions),
            *self.source_images,
            *(i for m in self.measurements for i in m.images),
            *(c.image for m in self.measurements for c in m.coordinates),
        ):
            if ref is not None and ref not in seen:
                seen.append(ref)
        return tuple(seen)


@dataclass(frozen=True)
class VerifyingObserver:
    """Who verified the document, for whom and when (Verifying Observer Sequence item).

    Attributes
    ----------
    name : str
        Verifying Observer Name (a person name, ``Family^Given``).
    organisation : str
        Verifying Organization.
    datetime : str
        Verification DateTime as stored (DICOM DT, ``YYYYMMDDHHMMSS...``).
    """

    name: str
    organisation: str
    datetime: str

    def describe(self) -> str:
        """``"Family, Given (Organisation) on 2024-05-01 14:03:00"`` with the parts that are known."""
        family, _, rest = self.name.partition("^")
        given = rest.split("^")[0] if rest else ""
        who = ", ".join(part for part in (family, given) if part) or "unnamed observer"
        if self.organisation:
            who += f" ({self.organisation})"
        when = _readable_datetime(self.datetime)
        return f"{who} on {when}" if when else who


def _readable_datetime(value: str) -> str:
    """DICOM DT ``YYYYMMDDHHMMSS[.ffffff][&ZZXX]`` as ``YYYY-MM-DD HH:MM:SS[ +ZZXX]``; other text unchanged."""
    text = value.strip()
    zone = ""
    for sign in ("+", "-"):
        if sign in text[8:]:
            cut = text.index(sign, 8)
            text, zone = text[:cut], " " + text[cut:]
            break
    digits = text.split(".")[0]
    if not digits.isdigit() or len(digits) < 8:
        return value.strip()
    date = f"{digits[0:4]}-{digits[4:6]}-{digits[6:8]}"
    clock = ":".join(digits[i : i + 2] for i in range(8, min(len(digits), 14), 2))
    return f"{date} {clock}{zone}".strip() if clock else f"{date}{zone}"


@dataclass(frozen=True)
class MeasurementReport:
    """What a TID 1500 (or other) SR document holds."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str
    patient_name: str
    content_date: str
    content_time: str
    title: CodedValue | None
    template_id: str
    completion_flag: str
    verification_flag: str
    procedures: tuple[CodedValue, ...]
    device_observer_uid: str
    device_observer_name: str
    device_observer_model: str
    image_library: tuple[ImageReference, ...]
    groups: tuple[MeasurementGroup, ...]
    loose_measurements: tuple[NumericMeasurement, ...]
    notes: tuple[TextObservation, ...]
    predecessors: tuple[str, ...] = field(default=())
    completion_flag_description: str = ""
    verifying_observers: tuple[VerifyingObserver, ...] = field(default=())

    @property
    def is_tid1500(self) -> bool:
        return self.template_id == "1500" or (self.title is not None and self.title.key == ("DCM", "126000"))

    def all_measurements(self) -> Iterator[tuple[MeasurementGroup | None, NumericMeasurement]]:
        """Every NUM item with the group it belongs to (``None`` for loose ones)."""
        for group in self.groups:
            for measurement in group.measurements:
                yield group, measurement
        for measurement in self.loose_measurements:
            yield None, measurement

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, strings, numbers) for JSON."""
        return asdict(self)


# --------------------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------------------


def _coded(seq: Sequence[Dataset] | None) -> CodedValue | None:
    if not seq:
        return None
    item = seq[0]
    value = item.get("CodeValue") or item.get("LongCodeValue") or item.get("URNCodeValue") or ""
    return CodedValue(
        value=str(value),
        scheme=str(item.get("CodingSchemeDesignator", "") or ""),
        meaning=str(item.get("CodeMeaning", "") or ""),
    )


def _name(item: Dataset) -> CodedValue | None:
    return _coded(item.get("ConceptNameCodeSequence"))


_key = item_key
_value_type = value_type


def _children(item: Dataset) -> list[Dataset]:
    return list(children(item))


def _image_ref(item: Dataset) -> ImageReference | None:
    refs = item.get("ReferencedSOPSequence")
    if not refs:
        return None
    ref = refs[0]
    frames = ref.get("ReferencedFrameNumber")
    if frames is None or frames == "":
        numbers: tuple[int, ...] = ()
    elif isinstance(frames, (list, tuple, pydicom.multival.MultiValue)):
        numbers = tuple(int(f) for f in frames)
    else:
        numbers = (int(frames),)
    return ImageReference(
        sop_class_uid=str(ref.get("ReferencedSOPClassUID", "") or ""),
        sop_instance_uid=str(ref.get("ReferencedSOPInstanceUID", "") or ""),
        frame_numbers=numbers,
    )


def _coordinates(item: Dataset) -> SpatialCoordinates:
    data = [float(v) for v in (item.get("GraphicData") or [])]
    three_d = _value_type(item) == "SCOORD3D"
    step = 3 if three_d else 2
    points = tuple(tuple(data[i : i + step]) for i in range(0, len(data) - step + 1, step))
    image = None
    for child in _children(item):
        if _value_type(child) == "IMAGE":
            image = _image_ref(child)
            break
    return SpatialCoordinates(
        concept=_name(item),
        graphic_type=str(item.get("GraphicType", "") or ""),
        points=points,
        image=image,
        frame_of_reference_uid=str(item.get("ReferencedFrameOfReferenceUID", "") or ""),
    )


def _numbers(raw: object) -> list[float]:
    if raw is None or raw == "":
        return []
    if isinstance(raw, (list, tuple, pydicom.multival.MultiValue)):
        return [float(v) for v in raw]
    return [float(raw)]  # type: ignore[arg-type]


def _temporal(item: Dataset) -> TemporalCoordinates:
    image = None
    for child in _children(item):
        if _value_type(child) == "IMAGE":
            image = _image_ref(child)
            break
    return TemporalCoordinates(
        concept=_name(item),
        range_type=str(item.get("TemporalRangeType", "") or ""),
        time_offsets_s=tuple(_numbers(item.get("ReferencedTimeOffsets"))),
        sample_positions=tuple(int(v) for v in _numbers(item.get("ReferencedSamplePositions"))),
        image=image,
    )


def _finding_site(item: Dataset) -> FindingSite | None:
    site = _coded(item.get("ConceptCodeSequence"))
    if site is None:
        return None
    laterality = modifier = None
    for child in _children(item):
        key = _key(child)
        if key == _LATERALITY:
            laterality = _coded(child.get("ConceptCodeSequence"))
        elif key == _TOPOGRAPHICAL_MODIFIER:
            modifier = _coded(child.get("ConceptCodeSequence"))
    return FindingSite(site=site, laterality=laterality, modifier=modifier)


def _numeric(item: Dataset) -> NumericMeasurement | None:
    name = _name(item)
    if name is None:
        return None
    value: float | None = None
    unit = None
    measured = item.get("MeasuredValueSequence")
    if measured:
        mv = measured[0]
        if mv.get("FloatingPointValue") is not None:
            value = float(mv.FloatingPointValue)
        elif mv.get("NumericValue") not in (None, ""):
            value = float(mv.NumericValue)
        unit = _coded(mv.get("MeasurementUnitsCodeSequence"))
    qualifier = _coded(item.get("NumericValueQualifierCodeSequence"))
    derivation = method = normality = None
    sites: list[FindingSite] = []
    coords: list[SpatialCoordinates] = []
    images: list[ImageReference] = []
    temporal: list[TemporalCoordinates] = []
    nested: list[NumericMeasurement] = []
    properties: dict[tuple[str, str], float | None] = {}
    range_description = ""
    for child in flatten(_children(item)):
        key = _key(child)
        vt = _value_type(child)
        if vt == "CODE" and key == _NORMALITY:
            normality = _coded(child.get("ConceptCodeSequence"))
        elif vt == "NUM" and key in (_NORMAL_RANGE_LOWER, _NORMAL_RANGE_UPPER, _POPULATION_MEAN, _POPULATION_SD, _Z_SCORE):
            inner = _numeric(child)
            properties[key] = inner.value if inner is not None else None
        elif vt == "NUM":
            other = _numeric(child)
            if other is not None:
                nested.append(other)
        elif vt == "TCOORD":
            temporal.append(_temporal(child))
        elif vt == "TEXT" and key == _NORMAL_RANGE_DESCRIPTION:
            range_description = str(child.get("TextValue", ""))
        elif vt == "CODE" and key == _DERIVATION:
            derivation = _coded(child.get("ConceptCodeSequence"))
        elif vt == "CODE" and key == _METHOD:
            method = _coded(child.get("ConceptCodeSequence"))
        elif vt == "CODE" and key == _FINDING_SITE:
            site = _finding_site(child)
            if site is not None:
                sites.append(site)
        elif vt in ("SCOORD", "SCOORD3D"):
            coords.append(_coordinates(child))
        elif vt == "IMAGE":
            ref = _image_ref(child)
            if ref is not None:
                images.append(ref)
    return NumericMeasurement(
        name=name,
        value=value,
        unit=unit,
        derivation=derivation,
        qualifier=qualifier,
        method=method,
        finding_sites=tuple(sites),
        coordinates=tuple(coords),
        images=tuple(images),
        temporal=tuple(temporal),
        nested=tuple(nested),
        normality=normality,
        normal_range_low=properties.get(_NORMAL_RANGE_LOWER),
        normal_range_high=properties.get(_NORMAL_RANGE_UPPER),
        normal_range_description=range_description,
        z_score=properties.get(_Z_SCORE),
        population_mean=properties.get(_POPULATION_MEAN),
        population_sd=properties.get(_POPULATION_SD),
    )


def _template_id(item: Dataset) -> str:
    seq = item.get("ContentTemplateSequence")
    if seq:
        return str(seq[0].get("TemplateIdentifier", "") or "")
    return ""


def _group(item: Dataset) -> MeasurementGroup:
    tracking_id = tracking_uid = None
    finding = category = None
    sites: list[FindingSite] = []
    regions: list[SpatialCoordinates] = []
    sources: list[ImageReference] = []
    measurements: list[NumericMeasurement] = []
    evaluations: list[TextObservation] = []
    algo: dict[str, Any] = {"name": "", "version": "", "parameters": []}
    for child in flatten(_children(item)):
        vt = _value_type(child)
        key = _key(child)
        name = _name(child)
        if vt == "TEXT" and key == _TRACKING_ID:
            tracking_id = str(child.get("TextValue", ""))
        elif vt == "UIDREF" and key == _TRACKING_UID:
            tracking_uid = str(child.get("UID", ""))
        elif vt == "CODE" and key == _FINDING:
            finding = _coded(child.get("ConceptCodeSequence"))
        elif vt == "CODE" and key == _FINDING_CATEGORY:
            category = _coded(child.get("ConceptCodeSequence"))
        elif vt == "CODE" and key == _FINDING_SITE:
            site = _finding_site(child)
            if site is not None:
                sites.append(site)
        elif vt == "TEXT" and key == _ALGORITHM_NAME:
            algo["name"] = str(child.get("TextValue", ""))
        elif vt == "TEXT" and key == _ALGORITHM_VERSION:
            algo["version"] = str(child.get("TextValue", ""))
        elif vt == "TEXT" and key == _ALGORITHM_PARAMETERS:
            algo["parameters"].append(str(child.get("TextValue", "")))
        elif vt in ("SCOORD", "SCOORD3D"):
            regions.append(_coordinates(child))
        elif vt == "IMAGE":
            ref = _image_ref(child)
            if ref is not None:
                sources.append(ref)
        elif vt == "NUM":
            measurement = _numeric(child)
            if measurement is not None:
                measurements.append(measurement)
        elif vt == "TEXT" and name is not None:
            evaluations.append(TextObservation(name=name, value=str(child.get("TextValue", ""))))
        elif vt == "CODE" and name is not None and key not in (_DERIVATION, _METHOD):
            code = _coded(child.get("ConceptCodeSequence"))
            if code is not None:
                evaluations.append(TextObservation(name=name, value=code.meaning, code=code))
    algorithm = None
    if algo["name"] or algo["version"]:
        algorithm = AlgorithmIdentification(algo["name"], algo["version"], tuple(algo["parameters"]))
    return MeasurementGroup(
        template_id=_template_id(item),
        tracking_identifier=tracking_id,
        tracking_uid=tracking_uid,
        finding=finding,
        finding_category=category,
        finding_sites=tuple(sites),
        regions=tuple(regions),
        source_images=tuple(sources),
        measurements=tuple(measurements),
        evaluations=tuple(evaluations),
        algorithm=algorithm,
    )


class _Walker:
    """Collects groups, loose NUMs, document-level TEXT and the image library."""

    def __init__(self) -> None:
        self.groups: list[MeasurementGroup] = []
        self.loose: list[NumericMeasurement] = []
        self.notes: list[TextObservation] = []
        self.library: list[ImageReference] = []
        self.procedures: list[CodedValue] = []
        self.observer: dict[str, str] = {}

    def walk(self, items: Sequence[Dataset], *, in_library: bool = False, depth: int = 0) -> None:
        for item in items:
            vt = _value_type(item)
            key = _key(item)
            if vt == "CONTAINER" and key == _MEASUREMENT_GROUP:
                self.groups.append(_group(item))
                continue
            if vt == "IMAGE" and in_library:
                ref = _image_ref(item)
                if ref is not None:
                    self.library.append(ref)
            elif vt == "NUM" and not in_library:
                measurement = _numeric(item)
                if measurement is not None:
                    self.loose.append(measurement)
                continue
            elif depth == 0 and vt == "CODE" and key == _PROCEDURE_REPORTED:
                code = _coded(item.get("ConceptCodeSequence"))
                if code is not None:
                    self.procedures.append(code)
            elif depth == 0 and vt == "UIDREF" and key == _DEVICE_OBSERVER_UID:
                self.observer.setdefault("uid", str(item.get("UID", "")))
            elif depth == 0 and vt == "TEXT" and key == _DEVICE_OBSERVER_NAME:
                self.observer.setdefault("name", str(item.get("TextValue", "")))
            elif depth == 0 and vt == "TEXT" and key == _DEVICE_OBSERVER_MODEL:
                self.observer.setdefault("model", str(item.get("TextValue", "")))
            elif (
                vt == "TEXT"
                and not in_library
                and str(item.get("RelationshipType", "")) == "CONTAINS"
                and _name(item) is not None
            ):
                self.notes.append(TextObservation(name=_name(item), value=str(item.get("TextValue", ""))))  # type: ignore[arg-type]
            if descends(item, in_library=in_library):
                self.walk(_children(item), in_library=in_library or key == _IMAGE_LIBRARY, depth=depth + 1)


def _load(source: str | os.PathLike[str] | BinaryIO | Dataset) -> Dataset:
    if isinstance(source, Dataset):
        return source
    try:
        return pydicom.dcmread(source)
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # pydicom raises many types on malformed input
        raise NotStructuredReportError(f"not a readable DICOM file: {type(exc).__name__}: {exc}") from None


def read_measurement_report(source: str | os.PathLike[str] | BinaryIO | Dataset) -> MeasurementReport:
    """Read the measurements of an SR document.

    Parameters
    ----------
    source : path, binary file or Dataset
        A DICOM SR (any SR storage class; TID 1500 documents are the target,
        other templates are read as far as they use the same concepts).

    Raises
    ------
    NotStructuredReportError
        Not DICOM, or not a Structured Report (no root CONTAINER with a
        Content Sequence).
    OSError
        The file cannot be opened.
    """
    ds = _load(source)
    if _value_type(ds) != "CONTAINER" or "ContentSequence" not in ds:
        modality = str(ds.get("Modality", "") or "missing")
        raise NotStructuredReportError(f"not a DICOM Structured Report (Modality {modality}, no SR content tree)")
    walker = _Walker()
    walker.walk(_children(ds))
    predecessors = tuple(
        str(sop.ReferencedSOPInstanceUID)
        for study in ds.get("PredecessorDocumentsSequence") or []
        for series in study.get("ReferencedSeriesSequence") or []
        for sop in series.get("ReferencedSOPSequence") or []
    )
    return MeasurementReport(
        sop_class_uid=str(ds.get("SOPClassUID", "") or ""),
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""),
        study_instance_uid=str(ds.get("StudyInstanceUID", "") or ""),
        series_instance_uid=str(ds.get("SeriesInstanceUID", "") or ""),
        patient_id=str(ds.get("PatientID", "") or ""),
        patient_name=str(ds.get("PatientName", "") or ""),
        content_date=str(ds.get("ContentDate", "") or ""),
        content_time=str(ds.get("ContentTime", "") or ""),
        title=_name(ds),
        template_id=_template_id(ds),
        completion_flag=str(ds.get("CompletionFlag", "") or ""),
        verification_flag=str(ds.get("VerificationFlag", "") or ""),
        procedures=tuple(walker.procedures),
        device_observer_uid=walker.observer.get("uid", ""),
        device_observer_name=walker.observer.get("name", ""),
        device_observer_model=walker.observer.get("model", ""),
        image_library=tuple(walker.library),
        groups=tuple(walker.groups),
        loose_measurements=tuple(walker.loose),
        notes=tuple(walker.notes),
        predecessors=predecessors,
        completion_flag_description=str(ds.get("CompletionFlagDescription", "") or ""),
        verifying_observers=tuple(
            VerifyingObserver(
                name=str(item.get("VerifyingObserverName", "") or ""),
                organisation=str(item.get("VerifyingOrganization", "") or ""),
                datetime=str(item.get("VerificationDateTime", "") or ""),
            )
            for item in ds.get("VerifyingObserverSequence") or []
        ),
    )

