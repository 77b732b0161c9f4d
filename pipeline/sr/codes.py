"""Coded concepts used in mskus Structured Reports (CONTRACT.md section 5).

Every code written by :mod:`pipeline.sr` is defined here, once. Standard codes
(SCT, DCM, LN, UCUM, UMLS) were checked against the DICOM content mapping
resource as shipped in pydicom's concept dictionary (``pydicom.sr.codedict``).

Anatomic sites for which no SNOMED CT code could be verified (most named
peripheral nerves and limb muscles) use the private coding scheme
:data:`LOCAL_SCHEME` (``"99MSKUS"``; by DICOM convention, private scheme
designators start with ``"99"``). The scheme is declared in the SR's Coding
Scheme Identification Sequence (:func:`local_coding_scheme`), so a reader can
tell that those codes are local.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from types import MappingProxyType

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.sr.coding import Code

from pipeline.protocols import Laterality

__all__ = [
    "concept_key",
    "ANALYSED_DURATION",
    "AREA",
    "CALIBRATION_NOTE",
    "COLOUR_FLOW",
    "CONFIDENCE",
    "CENTRAL_HALF",
    "DERIVATION",
    "DEVICE",
    "DEVICE_OBSERVER_UID",
    "DIAGNOSTIC_ULTRASONOGRAPHY",
    "ECHOGENICITY",
    "EXCLUDED_DURATION",
    "FAILED_IMAGE",
    "FASCICULATION_CONFIDENCE",
    "FASCICULATION_COUNT",
    "FASCICULATION_DURATION",
    "FASCICULATION_EXCLUSIONS",
    "FASCICULATION_PEAK_SPEED",
    "FASCICULATION_RATE",
    "FASCICULATION_TIME",
    "FINDING",
    "FLATTENING_RATIO",
    "FINDING_SITE",
    "FRAME_OF_REFERENCE_UID",
    "ALGORITHM_NAME",
    "ALGORITHM_PARAMETERS",
    "ALGORITHM_VERSION",
    "DEVICE_OBSERVER_MODEL_NAME",
    "DEVICE_OBSERVER_NAME",
    "DEVICE_OBSERVER_UID_CONCEPT",
    "FINDING_CATEGORY",
    "MEASUREMENT_METHOD",
    "NORMALITY",
    "NORMAL_RANGE_DESCRIPTION",
    "PROCEDURE_REPORTED",
    "TOPOGRAPHICAL_MODIFIER",
    "IMAGE_LIBRARY",
    "IMAGE_LIBRARY_GROUP",
    "IMAGE_REGION",
    "IMAGING_MEASUREMENTS",
    "IMAGING_MEASUREMENT_REPORT",
    "LATERALITY",
    "LATERALITY_CODES",
    "LOCAL_SCHEME",
    "MAJOR_AXIS",
    "MEAN",
    "MEASUREMENT_GROUP",
    "MEDIAN",
    "MINOR_AXIS",
    "MODALITY",
    "MODALITY_CODES",
    "MM",
    "MM2",
    "MM_PER_SECOND",
    "NERVE",
    "NOT_MEASURED_REASON",
    "NO_UNITS",
    "PERCENT",
    "PERIMETER",
    "PER_MINUTE",
    "PIXELS",
    "PIXEL_DATA_COLUMNS",
    "PIXEL_DATA_ROWS",
    "QUALITATIVE_EVALUATIONS",
    "SECOND",
    "SITE_CODES",
    "SKELETAL_MUSCLE",
    "SOURCE",
    "STANDARD_DEVIATION",
    "SUBCUTANEOUS_TISSUE",
    "TEMPORAL_EXTENT",
    "THICKNESS",
    "TRACKING_IDENTIFIER",
    "TRACKING_UNIQUE_IDENTIFIER",
    "VASCULARITY_GRADE",
    "VASCULARITY_INDEX",
    "VESSEL_COUNT",
    "laterality_code",
    "level_code",
    "local_coding_scheme",
    "normality_code",
    "site_code",
]

# --------------------------------------------------------------------------------------
# Document structure (TID 1500 / 1501 / 1410)
# --------------------------------------------------------------------------------------

#: Root concept of TID 1500 (CID 7021).
IMAGING_MEASUREMENT_REPORT = Code("126000", "DCM", "Imaging Measurement Report")
#: Procedure Reported (CID 100).
DIAGNOSTIC_ULTRASONOGRAPHY = Code("16310003", "SCT", "Diagnostic ultrasonography")
IMAGE_LIBRARY = Code("111028", "DCM", "Image Library")
IMAGE_LIBRARY_GROUP = Code("126200", "DCM", "Image Library Group")
#: Concept name of an Image Library entry (TID 1601).
SOURCE = Code("260753009", "SCT", "Source")
MODALITY = Code("121139", "DCM", "Modality")
PIXEL_DATA_ROWS = Code("110910", "DCM", "Pixel Data Rows")
PIXEL_DATA_COLUMNS = Code("110911", "DCM", "Pixel Data Columns")
FRAME_OF_REFERENCE_UID = Code("112227", "DCM", "Frame of Reference UID")
PIXELS = Code("{pixels}", "UCUM", "Pixels")
IMAGING_MEASUREMENTS = Code("126010", "DCM", "Imaging Measurements")
MEASUREMENT_GROUP = Code("125007", "DCM", "Measurement Group")
#: TID 1500 row 12: document-level qualitative evaluations (TEXT children, row 14).
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
#: Observer Type of the device observer (TID 1002).
DEVICE = Code("121007", "DCM", "Device")
TRACKING_IDENTIFIER = Code("112039", "DCM", "Tracking Identifier")
TRACKING_UNIQUE_IDENTIFIER = Code("112040", "DCM", "Tracking Unique Identifier")
FINDING = Code("121071", "DCM", "Finding")
FINDING_SITE = Code("363698007", "SCT", "Finding Site")
LATERALITY = Code("272741003", "SCT", "Laterality")
IMAGE_REGION = Code("111030", "DCM", "Image Region")
DERIVATION = Code("121401", "DCM", "Derivation")
#: Concepts the reader looks for (and highdicom writes): TID 1500 / 1501 / 1410 / 4019 / 1004.
PROCEDURE_REPORTED = Code("121058", "DCM", "Procedure reported")
FINDING_CATEGORY = Code("276214006", "SCT", "Finding category")
TOPOGRAPHICAL_MODIFIER = Code("106233006", "SCT", "Topographical modifier")
MEASUREMENT_METHOD = Code("370129005", "SCT", "Measurement Method")
NORMALITY = Code("121402", "DCM", "Normality")
NORMAL_RANGE_DESCRIPTION = Code("121407", "DCM", "Normal Range description")
ALGORITHM_NAME = Code("111001", "DCM", "Algorithm Name")
ALGORITHM_VERSION = Code("111003", "DCM", "Algorithm Version")
ALGORITHM_PARAMETERS = Code("111002", "DCM", "Algorithm Parameters")
DEVICE_OBSERVER_UID_CONCEPT = Code("121012", "DCM", "Device Observer UID")
DEVICE_OBSERVER_NAME = Code("121013", "DCM", "Device Observer Name")
DEVICE_OBSERVER_MODEL_NAME = Code("121015", "DCM", "Device Observer Model Name")

#: Acquisition modality codes (CID 29) for the Image Library.
MODALITY_CODES: Mapping[str, Code] = MappingProxyType(
    {"US": Code("US", "DCM", "Ultrasound"), "OT": Code("OT", "DCM", "Other")}
)

# --------------------------------------------------------------------------------------
# Findings
# --------------------------------------------------------------------------------------

NERVE = Code("84782009", "SCT", "Peripheral nerve")
#: The nerve Finding of reports written before CONTRACT.md named SCT 84782009 (a tissue-type code);
#: readers still recognise it.
NERVE_BEFORE_2026_11 = Code("91728009", "SCT", "Nerve")
SKELETAL_MUSCLE = Code("127954009", "SCT", "Skeletal muscle")
#: Finding (and Finding Site) of the subcutaneous-thickness group of a muscle frame: the layer between
#: the top of the image's tissue region and the superficial fascia. Verified in pydicom's concept
#: dictionary (``codes.SCT.SubcutaneousTissue``; CID 7151 / 7166 / 7191 in PS3.16).
SUBCUTANEOUS_TISSUE = Code("71966008", "SCT", "Subcutaneous tissue")

# --------------------------------------------------------------------------------------
# Measurements, derivations, units
# --------------------------------------------------------------------------------------

AREA = Code("42798000", "SCT", "Area")
PERIMETER = Code("131191004", "SCT", "Perimeter")
MAJOR_AXIS = Code("131187009", "SCT", "Major Axis")
MINOR_AXIS = Code("131188004", "SCT", "Minor Axis")
THICKNESS = Code("59089-3", "LN", "Thickness")
ECHOGENICITY = Code("110849", "DCM", "Echogenicity")

MEAN = Code("373098007", "SCT", "Mean")
STANDARD_DEVIATION = Code("386136009", "SCT", "Standard Deviation")
MEDIAN = Code("373099004", "SCT", "Median")

# Values of measurements.csv that the SR carries too (issue 18). The muscle's mean thickness over the
# central half of the width is Thickness (LN 59089-3) with Derivation Mean (SCT 373098007), both verified
# above; the Measurement Method (TID 300 row 2) says over what the mean was taken, with a local code.
# The subcutaneous thickness is Thickness (LN 59089-3) in a group of its own whose Finding and Finding Site
# are Subcutaneous tissue (SCT 71966008, above), with the caliper it was measured along. Flattening ratio
# and confidence: see the local codes below.

MM = Code("mm", "UCUM", "mm")
MM2 = Code("mm2", "UCUM", "square millimeter")
#: Unit of gray-level echogenicity (a dimensionless 0-255 gray value), of vessel counts and grades.
NO_UNITS = Code("1", "UCUM", "no units")
#: Unit of the vascularity index (CID 7181, pydicom's concept dictionary: ``codes.UCUM.Percent``).
PERCENT = Code("%", "UCUM", "Percent")

# --------------------------------------------------------------------------------------
# Laterality (CID 244)
# --------------------------------------------------------------------------------------

RIGHT = Code("24028007", "SCT", "Right")
LEFT = Code("7771000", "SCT", "Left")
RIGHT_AND_LEFT = Code("51440002", "SCT", "Right and left")

LATERALITY_CODES: Mapping[Laterality, Code] = MappingProxyType(
    {Laterality.RIGHT: RIGHT, Laterality.LEFT: LEFT, Laterality.BOTH: RIGHT_AND_LEFT}
)


def laterality_code(laterality: Laterality) -> Code | None:
    """The SNOMED CT laterality code, or ``None`` when the side is unknown."""
    return LATERALITY_CODES.get(Laterality(laterality))


# --------------------------------------------------------------------------------------
# Private (local) codes
# --------------------------------------------------------------------------------------

#: Private coding scheme designator for concepts with no verified standard code.
LOCAL_SCHEME = "99MSKUS"
LOCAL_SCHEME_NAME = "mskus local codes"

#: TEXT concept: why no (or no mm) measurement was made on a frame or image.
NOT_MEASURED_REASON = Code("NOT-MEASURED", LOCAL_SCHEME, "Reason no measurement was made")
#: TEXT concept: how the frame was calibrated when not from an ultrasound region.
CALIBRATION_NOTE = Code("CALIBRATION", LOCAL_SCHEME, "Calibration note")
#: TEXT concept (document level): an image of the study that was not (fully) measured.
FAILED_IMAGE = Code("FAILED-IMAGE", LOCAL_SCHEME, "Image not fully measured")

# Doppler vascularity (CONTRACT.md section 4). No standard concept for these quantities was found:
# DCM 111372 "Vascularity" is the BI-RADS concept whose values are the codes of CID 6157 (present /
# not present ...), not a percentage, a count or a 0-3 grade; SNOMED CT observables for them could not
# be verified. Local codes, declared with the scheme.

#: NUM (%): share of the structure's area covered by colour-flow pixels.
VASCULARITY_INDEX = Code("VASC-INDEX", LOCAL_SCHEME, "Vascularity index")
#: NUM (1): separate colour-flow components inside the nerve contour.
VESSEL_COUNT = Code("VESSEL-COUNT", LOCAL_SCHEME, "Intraneural vessel count")
#: NUM (1): 0 none, 1 one vessel, 2 two or three, 3 more than three.
VASCULARITY_GRADE = Code("VASC-GRADE", LOCAL_SCHEME, "Vascularity grade")
#: TEXT: the colour-flow acquisition (Ultrasound Color Data Present, Pulse Repetition Frequency)
#: next to Doppler values, or why there are none ("no colour flow data").
COLOUR_FLOW = Code("COLOUR-FLOW", LOCAL_SCHEME, "Colour flow")

# Fasciculation (cine clips, CONTRACT.md sections 2, 4 and 5). No standard concept for an automated
# fasciculation count, rate or event was found in PS3.16 or SNOMED CT observables; local codes.

#: NUM (1): fasciculations detected in the analysed time of a clip.
FASCICULATION_COUNT = Code("FASC-COUNT", LOCAL_SCHEME, "Fasciculation count")
#: NUM (/min): fasciculations per minute of analysed time.
FASCICULATION_RATE = Code("FASC-RATE", LOCAL_SCHEME, "Fasciculation rate")
#: NUM (s): clip time analysed.
ANALYSED_DURATION = Code("FASC-ANALYSED", LOCAL_SCHEME, "Analysed duration")
#: NUM (s): clip time excluded (global motion, blur, noise, widespread motion).
EXCLUDED_DURATION = Code("FASC-EXCLUDED", LOCAL_SCHEME, "Excluded duration")
#: NUM (s): one event, the time of peak displacement from the first frame.
FASCICULATION_TIME = Code("FASC-TIME", LOCAL_SCHEME, "Fasciculation time")
#: NUM (s), property of an event: time above a quarter of the peak displacement.
FASCICULATION_DURATION = Code("FASC-DURATION", LOCAL_SCHEME, "Fasciculation duration")
#: NUM (mm/s), property of an event: peak local speed.
FASCICULATION_PEAK_SPEED = Code("FASC-SPEED", LOCAL_SCHEME, "Fasciculation peak speed")
#: NUM (1), property of an event: detection confidence (0 to 1).
FASCICULATION_CONFIDENCE = Code("FASC-CONFIDENCE", LOCAL_SCHEME, "Fasciculation confidence")
#: TEXT: frames excluded from the fasciculation analysis, per reason.
FASCICULATION_EXCLUSIONS = Code("FASC-EXCLUSIONS", LOCAL_SCHEME, "Excluded frames")
#: Concept name of an event's TCOORD (the time it points at); a local code.
TEMPORAL_EXTENT = Code("FASC-WHEN", LOCAL_SCHEME, "Time of peak displacement")
SECOND = Code("s", "UCUM", "second")
PER_MINUTE = Code("/min", "UCUM", "per minute")
MM_PER_SECOND = Code("mm/s", "UCUM", "millimeter per second")


# Values of measurements.csv that the SR carries too (issue 18).

#: NUM (1): a nerve's major axis divided by its minor axis (``NerveMeasurement.flattening_ratio``).
#: No standard concept was found: pydicom's concept dictionary has SCT 118586006 "Ratio" only as a
#: qualifier value (a property, not an observable), and no aspect-ratio / flattening observable in
#: SCT, DCM or LN; a local code.
FLATTENING_RATIO = Code("FLATTENING", LOCAL_SCHEME, "Flattening ratio")
#: Measurement Method (SCT 370129005) of the muscle's Thickness (Mean): the perpendicular distance
#: between the inner fascia edges, averaged over every pixel column of the central half of the tissue
#: region's width (``MuscleMeasurement.thickness_mean_central_half_mm``). No standard method code
#: names this sampling; a local code.
CENTRAL_HALF = Code("CENTRAL-HALF", LOCAL_SCHEME, "central half of width")
#: NUM (1), one per measurement group: the algorithm's confidence in what the group shows, 0 to 1
#: (nerve: the segmenter's confidence in the contour; muscle: band contrast, continuity across the
#: width and fit residuals of the fascia edges; the ``confidence`` column of measurements.csv).
#: A NUM with a local code rather than a standard concept, because none fits: DCM 111012 "Certainty of
#: Finding" (pydicom's concept dictionary; CID 6048 CAD Operating Point Axis Label) is a CAD
#: finding's likelihood of being true, in %, and these heuristic 0-1 scores are not such a
#: probability; TID 310 Measurement Properties have no confidence row (DCM 121403 "Level of
#: Significance" is statistical significance against a reference); and the score describes the
#: whole group (the region drawn), not one value, so it is not a property of any one measurement.
CONFIDENCE = Code("CONFIDENCE", LOCAL_SCHEME, "Confidence")


def local_coding_scheme() -> CodingSchemeIdentificationItem:
    """Coding Scheme Identification item declaring :data:`LOCAL_SCHEME`."""
    return CodingSchemeIdentificationItem(
        designator=LOCAL_SCHEME,
        name=LOCAL_SCHEME_NAME,
        responsible_organization="mskus project",
    )


# --------------------------------------------------------------------------------------
# Anatomic sites (protocol site names of configs/protocols.yaml)
# --------------------------------------------------------------------------------------

#: Protocol site name (lower case) -> Finding Site code. SCT where the code was
#: verified in the DICOM content mapping resource, local codes otherwise.
SITE_CODES: Mapping[str, Code] = MappingProxyType(
    {
        # Standard codes (verified: CID 8134 / 7710 / 7151 in PS3.16).
        "brachial plexus": Code("36582005", "SCT", "Brachial plexus"),
        "deltoid muscle": Code("35259002", "SCT", "Deltoid muscle"),
        "nerve": Code("84782009", "SCT", "Peripheral nerve"),
        "skeletal muscle": Code("127954009", "SCT", "Skeletal muscle"),
        # Local codes.
        "median nerve": Code("MEDIAN-N", LOCAL_SCHEME, "median nerve"),
        "ulnar nerve": Code("ULNAR-N", LOCAL_SCHEME, "ulnar nerve"),
        "radial nerve": Code("RADIAL-N", LOCAL_SCHEME, "radial nerve"),
        "tibial nerve": Code("TIBIAL-N", LOCAL_SCHEME, "tibial nerve"),
        "common peroneal nerve": Code("COM-PERONEAL-N", LOCAL_SCHEME, "common peroneal nerve"),
        "sural nerve": Code("SURAL-N", LOCAL_SCHEME, "sural nerve"),
        "sciatic nerve": Code("SCIATIC-N", LOCAL_SCHEME, "sciatic nerve"),
        "femoral nerve": Code("FEMORAL-N", LOCAL_SCHEME, "femoral nerve"),
        "rectus femoris muscle": Code("RECTUS-FEMORIS", LOCAL_SCHEME, "rectus femoris muscle"),
        "vastus muscle": Code("VASTUS", LOCAL_SCHEME, "vastus muscle"),
        "quadriceps muscle": Code("QUADRICEPS", LOCAL_SCHEME, "quadriceps muscle"),
        "tibialis anterior muscle": Code("TIBIALIS-ANT", LOCAL_SCHEME, "tibialis anterior muscle"),
        "gastrocnemius muscle": Code("GASTROCNEMIUS", LOCAL_SCHEME, "gastrocnemius muscle"),
        "soleus muscle": Code("SOLEUS", LOCAL_SCHEME, "soleus muscle"),
        "biceps muscle": Code("BICEPS", LOCAL_SCHEME, "biceps muscle"),
        "triceps muscle": Code("TRICEPS", LOCAL_SCHEME, "triceps muscle"),
        "forearm flexor muscles": Code("FOREARM-FLEXORS", LOCAL_SCHEME, "forearm flexor muscles"),
        "cervical nerve root": Code("CERV-ROOT", LOCAL_SCHEME, "cervical nerve root"),
        "vastus intermedius muscle": Code("VASTUS-INTERMED", LOCAL_SCHEME, "vastus intermedius muscle"),
        "vastus lateralis muscle": Code("VASTUS-LATERALIS", LOCAL_SCHEME, "vastus lateralis muscle"),
        "vastus medialis muscle": Code("VASTUS-MEDIALIS", LOCAL_SCHEME, "vastus medialis muscle"),
        "medial gastrocnemius muscle": Code("GASTROC-MED", LOCAL_SCHEME, "medial gastrocnemius muscle"),
        "lateral gastrocnemius muscle": Code("GASTROC-LAT", LOCAL_SCHEME, "lateral gastrocnemius muscle"),
        "biceps brachii muscle": Code("BICEPS-BRACHII", LOCAL_SCHEME, "biceps brachii muscle"),
        "biceps femoris muscle": Code("BICEPS-FEMORIS", LOCAL_SCHEME, "biceps femoris muscle"),
    }
)

# --------------------------------------------------------------------------------------
# Levels along a structure (the `levels:` of configs/protocols.yaml): the Topographical
# Modifier (SCT 106233006) of the Finding Site. SCT where the region's code is in pydicom's
# concept dictionary (DICOM content mapping resource: Forearm, Upper arm, Popliteal fossa in
# CID 7151/8134; Wrist region structure); local codes otherwise (a joint code such as Elbow joint
# is not the region, so elbow and ankle are local).
# --------------------------------------------------------------------------------------

LEVEL_CODES: Mapping[str, Code] = MappingProxyType(
    {
        "wrist": Code("8205005", "SCT", "Wrist region"),
        "forearm": Code("14975008", "SCT", "Forearm"),
        "upper arm": Code("40983000", "SCT", "Upper arm"),
        "popliteal fossa": Code("32361000", "SCT", "Popliteal fossa"),
        "elbow": Code("LVL-ELBOW", LOCAL_SCHEME, "elbow level"),
        "ankle": Code("LVL-ANKLE", LOCAL_SCHEME, "ankle level"),
        "fibular head": Code("LVL-FIBULAR-HEAD", LOCAL_SCHEME, "fibular head level"),
        "distal lower leg": Code("LVL-DIST-LOW-LEG", LOCAL_SCHEME, "distal lower leg level"),
        "trunks": Code("LVL-TRUNKS", LOCAL_SCHEME, "brachial plexus trunks"),
        "C5": Code("LVL-C5", LOCAL_SCHEME, "C5 level"),
        "C6": Code("LVL-C6", LOCAL_SCHEME, "C6 level"),
        "C7": Code("LVL-C7", LOCAL_SCHEME, "C7 level"),
    }
)


def level_code(level: str) -> Code | None:
    """The Topographical Modifier code of a level (``None`` for an unknown level, ``""``).

    Levels of a custom rules file that are not in :data:`LEVEL_CODES` get a
    deterministic local code (``LVL-`` and a hash) whose meaning is the level name.
    """
    name = " ".join(str(level).split())
    if not name:
        return None
    known = LEVEL_CODES.get(name) or LEVEL_CODES.get(name.lower())
    if known is not None:
        return known
    return Code("LVL-" + hashlib.sha256(name.lower().encode("utf-8")).hexdigest()[:10].upper(), LOCAL_SCHEME, name[:_MEANING_MAX])


# --------------------------------------------------------------------------------------
# Reference intervals and normality (TID 310 / 312; CID 222, CID 223, CID 226, CID 227),
# verified in pydicom's concept dictionary.
# --------------------------------------------------------------------------------------

#: CID 222 Normality.
NORMAL = Code("17621005", "SCT", "Normal")
ABNORMALLY_HIGH = Code("371879000", "SCT", "Abnormally High")
ABNORMALLY_LOW = Code("371880002", "SCT", "Abnormally Low")
#: CID 223 Normal Range Values.
NORMAL_RANGE_LOWER_LIMIT = Code("385524004", "SCT", "Normal Range Lower Limit")
NORMAL_RANGE_UPPER_LIMIT = Code("371933006", "SCT", "Normal Range Upper Limit")
#: CID 226 Population Statistical Descriptors / CID 227 Sample Statistical Descriptors.
MEAN_VALUE_OF_POPULATION = Code("373098007", "SCT", "Mean Value of population")
STANDARD_DEVIATION_OF_POPULATION = Code("121414", "DCM", "Standard deviation of population")
Z_SCORE = Code("121416", "DCM", "Z-Score of measurement")

#: TEXT (document level): what the flags are (decision support, not diagnosis) and which tables.
REFERENCE_NOTE = Code("REFERENCE-NOTE", LOCAL_SCHEME, "Reference comparison note")
#: TEXT (per value): why a value has no normality (no row, level unknown, missing covariate).
REFERENCE_NOT_APPLIED = Code("REFERENCE-NONE", LOCAL_SCHEME, "Reference not applied")

# Study-level derived values (findings.csv); no standard concept was found for them.
#: NUM (1): CSA at one level divided by CSA at another (wrist-to-forearm ratio).
LEVEL_RATIO = Code("LEVEL-RATIO", LOCAL_SCHEME, "CSA ratio between levels")
#: NUM (mm2): CSA at one level minus CSA at another (delta CSA).
LEVEL_DIFFERENCE = Code("LEVEL-DIFFERENCE", LOCAL_SCHEME, "CSA difference between levels")
#: NUM: right minus left at the same structure and level.
SIDE_DIFFERENCE = Code("RIGHT-MINUS-LEFT", LOCAL_SCHEME, "Right minus left")
#: NUM (1): sites enlarged against the nerve limits.
SITES_ENLARGED = Code("SITES-ENLARGED", LOCAL_SCHEME, "Nerve sites enlarged")
#: TEXT: focal / multifocal / diffuse enlargement, and the inputs of a derived value.
ENLARGEMENT_PATTERN = Code("ENLARGE-PATTERN", LOCAL_SCHEME, "Enlargement pattern")
FINDING_INPUTS = Code("FINDING-INPUTS", LOCAL_SCHEME, "Derived from")


def normality_code(flag: str) -> Code | None:
    """CID 222 code of a flag: normal, abnormally high (enlarged, increased), low (reduced, decreased); none: ``None``."""
    return {
        "normal": NORMAL,
        "enlarged": ABNORMALLY_HIGH,
        "increased": ABNORMALLY_HIGH,
        "reduced": ABNORMALLY_LOW,
        "decreased": ABNORMALLY_LOW,
    }.get(str(flag))

_CODE_VALUE_MAX = 16  # Code Value is SH
_MEANING_MAX = 64  # Code Meaning is LO


def site_code(site: str) -> Code:
    """Finding Site code for a protocol site name.

    Known sites map to :data:`SITE_CODES`; any other name (from a custom
    rules file) gets a deterministic local code whose meaning is the name.

    Raises
    ------
    ValueError
        ``site`` is empty.
    """
    name = " ".join(str(site).split())
    if not name:
        raise ValueError("a finding site name must not be empty")
    known = SITE_CODES.get(name.lower())
    if known is not None:
        return known
    value = re.sub(r"[^A-Z0-9]+", "-", name.upper()).strip("-")
    if not value or len(value) > _CODE_VALUE_MAX:
        value = "SITE-" + hashlib.sha256(name.lower().encode("utf-8")).hexdigest()[:10].upper()
    return Code(value, LOCAL_SCHEME, name[:_MEANING_MAX])


# --------------------------------------------------------------------------------------
# Device identity
# --------------------------------------------------------------------------------------

#: Stable Device Observer UID of the mskus program (the same for every version;
#: the version is reported next to it).
DEVICE_OBSERVER_UID = "2.25." + str(uuid.uuid5(uuid.NAMESPACE_URL, "urn:mskus:device-observer").int)


def concept_key(code: Code) -> tuple[str, str]:
    """(scheme designator, value) of a code: how readers match a content item's concept to it."""
    return (str(code.scheme_designator), str(code.value))
