"""Choose the measurement protocol (nerve or muscle) from DICOM attributes.

Rules live in ``configs/protocols.yaml`` and are validated on load
(CONTRACT.md section 3). An image that matches no rule is reported as "no
protocol matched" together with the attribute values that were looked at;
nothing is guessed.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from pipeline.errors import MskusInputError, UsageError
from pipeline.measurements.muscle import ThicknessSite
from pipeline.resources import shipped_config

__all__ = [
    "DEFAULT_PROTOCOLS_PATH",
    "Laterality",
    "LevelRule",
    "NoProtocolMatchedError",
    "Protocol",
    "ProtocolChoice",
    "ProtocolRules",
    "laterality_of",
    "load_protocol_rules",
]

DEFAULT_PROTOCOLS_PATH = shipped_config("protocols.yaml")
_ALLOWED_ATTRIBUTES = frozenset(
    {"SeriesDescription", "ProtocolName", "StudyDescription", "BodyPartExamined", "ImageComments"}
)


class Protocol(str, enum.Enum):
    NERVE = "nerve"
    MUSCLE = "muscle"


class Laterality(str, enum.Enum):
    RIGHT = "R"
    LEFT = "L"
    BOTH = "B"
    UNKNOWN = ""


class NoProtocolMatchedError(MskusInputError):
    """No rule matched the image's attributes."""

    code = "no_protocol"


@dataclass(frozen=True)
class ProtocolRule:
    protocol: Protocol
    site: str
    pattern: re.Pattern[str]
    #: Where a muscle's thickness caliper starts (None: the centre, CONTRACT.md section 4).
    thickness_site: ThicknessSite | None = None
    #: Which muscle layer from the skin is measured (1: the most superficial, CONTRACT.md section 4).
    muscle_layer: int = 1


@dataclass(frozen=True)
class LevelRule:
    """Where along a structure the image was taken (``levels:`` in the rules file).

    Attributes
    ----------
    site : str
        The protocol site the level belongs to (``median nerve``).
    level : str
        The level's name (``wrist``, ``forearm``, ``C5``); reference tables are keyed by it.
    pattern : re.Pattern
        Matched case-insensitively against the attribute values the site rules look at.
    """

    site: str
    level: str
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class ProtocolChoice:
    """The protocol chosen for an image and why.

    ``attribute`` is the DICOM keyword whose value matched, or ``"override"``.
    ``level`` is where along the structure the image was taken (``"wrist"``), from the
    ``levels:`` rules; empty when no level rule matched or two different levels did
    (never guessed).
    """

    protocol: Protocol
    site: str
    attribute: str
    value: str
    thickness_site: ThicknessSite | None = None
    muscle_layer: int = 1
    level: str = ""


@dataclass(frozen=True)
class ProtocolRules:
    """Validated protocol selection rules."""

    attributes: tuple[str, ...]
    rules: tuple[ProtocolRule, ...]
    levels: tuple[LevelRule, ...] = ()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "<config>") -> ProtocolRules:
        """Validate and build rules; raise :class:`UsageError` naming the problem."""
        if not isinstance(data, Mapping):
            raise UsageError(f"{source}: expected a mapping at the top level")
        if data.get("version") != 1:
            raise UsageError(f"{source}: unsupported or missing version (expected 1)")
        attributes = data.get("attributes")
        if not isinstance(attributes, list) or not attributes:
            raise UsageError(f"{source}: 'attributes' must be a non-empty list")
        for attribute in attributes:
            if attribute not in _ALLOWED_ATTRIBUTES:
                raise UsageError(f"{source}: attribute {attribute!r} is not one of {sorted(_ALLOWED_ATTRIBUTES)}")
        unknown = set(data) - {"version", "attributes", "rules", "levels"}
        if unknown:
            raise UsageError(f"{source}: unknown key(s) {sorted(unknown)} (expected version, attributes, rules, levels)")
        raw_rules = data.get("rules")
        if not isinstance(raw_rules, list) or not raw_rules:
            raise UsageError(f"{source}: 'rules' must be a non-empty list")
        rules = []
        for number, raw in enumerate(raw_rules, start=1):
            if not isinstance(raw, Mapping) or set(raw) - {"protocol", "site", "pattern", "thickness_site", "layer"}:
                raise UsageError(
                    f"{source}: rule {number} must have only protocol, site, pattern and (muscle) thickness_site, layer"
                )
            try:
                protocol = Protocol(raw.get("protocol"))
            except ValueError:
                raise UsageError(f"{source}: rule {number}: protocol must be 'nerve' or 'muscle'") from None
            site = raw.get("site")
            if not isinstance(site, str) or not site.strip():
                raise UsageError(f"{source}: rule {number}: 'site' must be a non-empty string")
            pattern = raw.get("pattern")
            if not isinstance(pattern, str) or not pattern:
                raise UsageError(f"{source}: rule {number}: 'pattern' must be a non-empty string")
            try:
                compiled = re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                raise UsageError(f"{source}: rule {number}: invalid pattern {pattern!r}: {exc}") from None
            thickness_site = None
            if "thickness_site" in raw:
                if protocol is not Protocol.MUSCLE:
                    raise UsageError(f"{source}: rule {number}: thickness_site applies to muscle rules only")
                try:
                    thickness_site = ThicknessSite.from_mapping(raw["thickness_site"])
                except ValueError as exc:
                    raise UsageError(f"{source}: rule {number}: {exc}") from None
            layer = raw.get("layer", 1)
            if "layer" in raw and protocol is not Protocol.MUSCLE:
                raise UsageError(f"{source}: rule {number}: layer applies to muscle rules only")
            if isinstance(layer, bool) or not isinstance(layer, int) or not 1 <= layer <= 4:
                raise UsageError(f"{source}: rule {number}: layer must be a whole number from 1 (under the skin) to 4")
            rules.append(ProtocolRule(protocol, site.strip(), compiled, thickness_site, layer))
        levels = _level_rules(data.get("levels", []), {rule.site for rule in rules}, source)
        return cls(tuple(attributes), tuple(rules), levels)

    def level_of(self, site: str, looked_at: Mapping[str, str]) -> str:
        """The level of ``site`` named by the attribute values, or ``""`` (unknown).

        Attributes are searched in order; the first attribute in which any level
        rule of ``site`` matches decides. Two different levels matching there
        (``"median wrist to forearm"``) give ``""``: a level is never guessed.
        """
        candidates = [rule for rule in self.levels if rule.site == site]
        for value in looked_at.values():
            if not value:
                continue
            found = {rule.level for rule in candidates if rule.pattern.search(value)}
            if len(found) == 1:
                return found.pop()
            if found:
                return ""
        return ""

    def choose(self, ds: Dataset, *, override: Protocol | str | None = None) -> ProtocolChoice:
        """The protocol for ``ds``; ``override`` forces one (the site still comes from the rules).

        Raises
        ------
        NoProtocolMatchedError
            No rule matched and no override was given.
        """
        looked_at = {attr: str(ds.get(attr, "") or "").strip() for attr in self.attributes}
        match: ProtocolChoice | None = None
        for attribute, value in looked_at.items():
            if not value:
                continue
            for rule in self.rules:
                if rule.pattern.search(value):
                    match = ProtocolChoice(
                        rule.protocol, rule.site, attribute, value, rule.thickness_site, rule.muscle_layer,
                        self.level_of(rule.site, looked_at),
                    )
                    break
            if match is not None:
                break
        if override is not None:
            forced = Protocol(override)
            if match is not None and match.protocol is forced:
                return match
            generic = "nerve" if forced is Protocol.NERVE else "skeletal muscle"
            return ProtocolChoice(forced, generic, "override", forced.value)
        if match is None:
            shown = ", ".join(f"{k}={v!r}" for k, v in looked_at.items()) or "none"
            raise NoProtocolMatchedError(f"no protocol matched (looked at {shown})")
        return match


def _level_rules(raw_levels: Any, sites: set[str], source: str) -> tuple[LevelRule, ...]:
    """Validate the ``levels:`` list: each ``{site, level, pattern}`` for a site some rule names."""
    if not isinstance(raw_levels, list):
        raise UsageError(f"{source}: 'levels' must be a list")
    out: list[LevelRule] = []
    for number, raw in enumerate(raw_levels, start=1):
        if not isinstance(raw, Mapping) or set(raw) != {"site", "level", "pattern"}:
            raise UsageError(f"{source}: level {number} must have exactly site, level and pattern")
        site, level, pattern = raw["site"], raw["level"], raw["pattern"]
        if not isinstance(site, str) or site.strip() not in sites:
            raise UsageError(f"{source}: level {number}: site {site!r} is not the site of any rule")
        if not isinstance(level, str) or not level.strip():
            raise UsageError(f"{source}: level {number}: 'level' must be a non-empty string")
        if not isinstance(pattern, str) or not pattern:
            raise UsageError(f"{source}: level {number}: 'pattern' must be a non-empty string")
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            raise UsageError(f"{source}: level {number}: invalid pattern {pattern!r}: {exc}") from None
        out.append(LevelRule(site.strip(), level.strip(), compiled))
    return tuple(out)


def load_protocol_rules(path: str | Path | None = None) -> ProtocolRules:
    """Load and validate protocol rules (the shipped ``configs/protocols.yaml`` by default)."""
    from pipeline.yamlfile import read_yaml_mapping

    path = Path(path) if path is not None else DEFAULT_PROTOCOLS_PATH
    return ProtocolRules.from_mapping(read_yaml_mapping(path, what="protocol rules", empty_ok=False), source=str(path))


_WORD_SIDE = re.compile(r"\b(LEFT|RIGHT)\b", re.IGNORECASE)
_LEADING_SIDE = re.compile(r"^\s*([LR])\s")


def laterality_of(ds: Dataset, attributes: Sequence[str] = ("SeriesDescription", "ProtocolName", "StudyDescription")) -> Laterality:
    """Laterality per CONTRACT.md section 3.

    Image Laterality (0020,0062), else Laterality (0020,0060), else the words
    LEFT/RIGHT or a leading "L "/"R " in the descriptions.
    """
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(ds.get(keyword, "") or "").strip().upper()
        if value in ("R", "L", "B"):
            return Laterality(value)
    for attribute in attributes:
        text = str(ds.get(attribute, "") or "")
        word = _WORD_SIDE.search(text)
        if word:
            return Laterality.RIGHT if word.group(1).upper() == "RIGHT" else Laterality.LEFT
        leading = _LEADING_SIDE.match(text.upper())
        if leading:
            return Laterality(leading.group(1))
    return Laterality.UNKNOWN
