"""GOES vocabulary the ingestor normalises to: satellite names, scaling eras and flare classes."""

from __future__ import annotations

import math
import re
from functools import lru_cache

from shared.messages import FlareClass, ScalingEra

# Lower bound of each class on the XRS-B (0.1-0.8 nm) peak flux, W/m².
CLASS_FLOOR_FLUX: dict[FlareClass, float] = {"A": 1e-8, "B": 1e-7, "C": 1e-6, "M": 1e-5, "X": 1e-4}
_CLASS_PATTERN = re.compile(r"^([ABCMX])(\d+(?:\.\d+)?)$")
_SATELLITE_NUMBER = re.compile(r"^(?:GOES|GO|G)[-_ ]?0*(\d{1,2})$", re.IGNORECASE)
FIRST_TRUE_FLUX_SATELLITE = 16


def satellite_name(value: str | int) -> str:
    """`GOES-15` from 15, "15", "G15", "GO8", "goes-16"; anything else (e.g. "SDO") is kept upper-cased."""
    text = str(value).strip()
    if text.isdigit():
        return f"GOES-{int(text)}"
    match = _SATELLITE_NUMBER.match(text)
    return f"GOES-{int(match.group(1))}" if match else text.upper()


@lru_cache(maxsize=64)
def scaling_era(satellite: str) -> ScalingEra:
    """GOES-8..15 operational flux carries SWPC's scaling factors; GOES-16 and later are true flux."""
    match = _SATELLITE_NUMBER.match(satellite)
    if match is None:
        raise ValueError(f"not a GOES satellite: {satellite!r}")
    return "true_flux" if int(match.group(1)) >= FIRST_TRUE_FLUX_SATELLITE else "swpc_scaled"


def class_of_flux(peak_flux: float) -> str:
    """The NOAA class of a peak, one decimal, truncated as NOAA does: 2.19e-6 -> "C2.1", 1.2e-3 -> "X12.0"."""
    if not peak_flux > 0:
        raise ValueError(f"a flare peak must be positive, got {peak_flux!r}")
    letter: FlareClass = "A"
    for candidate, floor in CLASS_FLOOR_FLUX.items():
        if peak_flux >= floor * (1 - 1e-9):
            letter = candidate
    # The small epsilon keeps 2.1e-6 (stored as 2.0999...e-6) from truncating to 2.0.
    tenths = math.floor(peak_flux / CLASS_FLOOR_FLUX[letter] * 10 + 1e-6)
    return f"{letter}{tenths / 10:.1f}"


def flux_of_class(goes_class: str) -> float:
    """The peak flux a class names: "C2.1" -> 2.1e-6, "X10" -> 1e-3."""
    match = _CLASS_PATTERN.match(goes_class.strip())
    if match is None:
        raise ValueError(f"not a GOES class: {goes_class!r} (expected e.g. C2.1)")
    return float(match.group(2)) * CLASS_FLOOR_FLUX[match.group(1)]  # type: ignore[index]
