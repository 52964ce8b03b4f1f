"""NOAA files and feeds -> normalised flux records and flare events, each bad record rejected with its reason.

The format is told by the content (magic bytes, the header line, the shape of a record), never by the file
name; the name is only asked for the satellite when the content does not say it. Every reader returns the
same `ReadResult`: flux records (one per satellite and time tag, both bands, quality, cadence, scaling era),
or flare events, plus the records it refused and why.

Missing is not malformed. A fill value (-99999, or 0 where NOAA writes 0 for "no data"), a non-zero quality
flag, an empty cell or a source's own "missing" flag make a *missing* reading: stored with the reason in
`quality` and a NULL flux, never published as flux. A record that cannot be a reading at all (unparseable,
NaN, negative or absurd flux, a time tag that repeats or goes backwards, the wrong number of fields) is
*rejected*: counted and sent to the dead-letter topic.
"""

from __future__ import annotations

import bz2
import csv
import json
import math
import re
import zlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from services.ingestor.goes import flux_of_class, satellite_name, scaling_era
from shared.messages import FlareObserved, ScalingEra, stable_id

MISSING_SENTINELS = frozenset({-99999.0, -9999.0, 0.0})
# Runs of at least this many identical 1-minute readings (both bands, to the last digit) are a value carried
# forward over a gap, as in the GOES-16 parquet file, not a measurement; real data repeats for 2-3 minutes.
STALE_RUN_MINUTES = 10
DEFAULT_MAX_FLUX = 1e-2
A_BAND, B_BAND = "0.05-0.4nm", "0.1-0.8nm"
GOOD = "good"
ONE_DAY = timedelta(days=1)


class UnrecognisedFormat(ValueError):
    """The content is none of the formats the ingestor reads."""


class Invalid(ValueError):
    """One record cannot be accepted; the message is the reason."""


@dataclass(frozen=True, slots=True)
class FluxRecord:
    satellite: str
    time_tag: datetime
    cadence_seconds: int
    scaling_era: ScalingEra
    xrsa_flux: float | None
    xrsb_flux: float | None
    quality: str
    source: str

    @property
    def usable(self) -> bool:
        """Published as flux only with an XRS-B value: the long band is what classes and forecasts read."""
        return self.xrsb_flux is not None


@dataclass(frozen=True, slots=True)
class Reject:
    where: str  # "line 17", "record 3": where in the input the record was
    raw: str
    reason: str

    @property
    def position(self) -> int | None:
        """The line or record number, for the dead letter's offset (a file has no Kafka offset)."""
        number = self.where.rsplit(" ", 1)[-1]
        return int(number) if number.isdigit() else None


@dataclass
class ReadResult:
    source: str
    format: str
    records_read: int = 0
    flux: list[FluxRecord] = field(default_factory=list)
    flares: list[FlareObserved] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    error: str | None = None  # set when the input could not be read to its end

    def reject(self, where: str, raw: str, reason: str) -> None:
        self.rejects.append(Reject(where, raw, reason))

    def within(self, start: datetime | None, end: datetime | None) -> "ReadResult":
        """Only the readings and flares in [start, end): a replay of part of a file."""
        def inside(moment: datetime) -> bool:
            return (start is None or moment >= start) and (end is None or moment < end)

        flux = [r for r in self.flux if inside(r.time_tag)]
        flares = [f for f in self.flares if inside(f.peak_time)]
        return replace(self, flux=flux, flares=flares, records_read=len(flux) + len(flares))


# ---- bytes, compression, format ------------------------------------------------------------------------------


def decompress(raw: bytes) -> tuple[bytes, str | None]:
    """Plain, gzip or bzip2 content by its magic bytes; a cut-off stream gives what it holds and the reason."""
    if raw[:2] == b"\x1f\x8b":
        decoder = zlib.decompressobj(wbits=47)
        kind = "gzip"
    elif raw[:3] == b"BZh":
        decoder = bz2.BZ2Decompressor()
        kind = "bzip2"
    else:
        return raw, None
    try:
        data = decoder.decompress(raw)
    except (zlib.error, OSError, EOFError) as exc:
        return b"", f"{kind} stream is corrupt: {exc}"
    if not decoder.eof:
        return data, f"{kind} stream ends early: the file is truncated ({len(raw)} bytes)"
    return data, None


FLUX_CSV_LAYOUTS: dict[str, dict[str, Any]] = {
    # NOAA new_avg 1-minute averages, with or without the metadata header that ends at "data:".
    "noaa_new_avg_csv": dict(time="time_tag", a="A_AVG", b="B_AVG", a_flag="A_QUAL_FLAG", b_flag="B_QUAL_FLAG",
                             cadence=60),
    # GOES-15 hourly means; the stamp is the middle of the hour and is kept as given.
    "goes_hourly_csv": dict(time="time", a="xrsa_short_0.05-0.4nm", b="xrsb_long_0.1-0.8nm", cadence=3600),
    # GOES-16 1-minute science product as CSV; its flare_class column is the flux's class, not an event.
    "goes_xrs_1m_csv": dict(time="time", a="xrsa_flux", b="xrsb_flux", cadence=60),
    # SWPC JSON flattened to CSV, with SWPC's own missing flag.
    "swpc_xray_1m_csv": dict(time="time_tag", a="xray_0.05-0.4nm", b="xray_0.1-0.8nm", missing_flag="xray_is_missing",
                             cadence=60),
}
FLARE_CSV_LAYOUTS: dict[str, set[str]] = {
    "swpc_flarelist_sc24_csv": {"event_starttime", "event_peaktime", "event_endtime", "goes_class"},
    "swpc_flarelist_1996_csv": {"date", "start_time", "max_time", "end_time", "goes_class"},
}
_NGDC_LINE = re.compile(rb"^\d{11}  [ \d]{4}")


def detect_format(data: bytes) -> str:
    """The format of decompressed content, from its magic bytes or its first meaningful line."""
    if data[:3] == b"CDF" or data[:4] == b"\x89HDF":
        return _netcdf_product(data)
    if data[:4] == b"PAR1":
        return "goes_parquet"
    head = data[:16384].decode("utf-8", errors="replace")
    stripped = head.lstrip("\ufeff \t\r\n")
    if stripped[:1] in ("[", "{"):
        return "swpc_json"
    lines = [line.strip() for line in stripped.splitlines()]
    if any(line.startswith("data:") for line in lines):
        return "noaa_new_avg_csv"
    first = next((line for line in lines if line), "")
    if _NGDC_LINE.match(first.encode()):
        return "ngdc_xrs_report"
    columns = {name.strip() for name in next(csv.reader([first]), [])}
    for name, layout in FLUX_CSV_LAYOUTS.items():
        if {layout["time"], layout["a"], layout["b"]} <= columns:
            return name
    for name, required in FLARE_CSV_LAYOUTS.items():
        if required <= columns:
            return name
    raise UnrecognisedFormat(f"not a format the ingestor reads; it starts with {first[:120]!r}")


def _netcdf_product(data: bytes) -> str:
    """Which NOAA product a netCDF file holds, by its variables: the GOES-R L2 1-minute averages (`time`,
    `xrsb_flux`) or the GOES-8..15 new_avg averages; a file that cannot be opened is left to the new_avg reader,
    which reports why."""
    import netCDF4

    try:
        with netCDF4.Dataset("in-memory.nc", memory=data) as dataset:
            names = set(dataset.variables)
    except OSError:
        return "noaa_new_avg_netcdf"
    return "goes_r_xrs_avg1m_netcdf" if {"time", "xrsb_flux"} <= names else "noaa_new_avg_netcdf"


_NAME_SATELLITE = re.compile(r"(?:^|[^a-z])g(?:oes)?[-_]?(\d{2})(?=[^0-9]|$)", re.IGNORECASE)


def satellite_from_name(name: str) -> str | None:
    """`GOES-15` from names like g15_xrs_1m_..., goes16_xrs_..., GOES-18...; None when the name says nothing."""
    match = _NAME_SATELLITE.search(Path(name).name)
    return f"GOES-{int(match.group(1))}" if match else None


# ---- entry points --------------------------------------------------------------------------------------------


def read_path(path: Path, *, satellite: str | None = None, max_flux: float = DEFAULT_MAX_FLUX) -> ReadResult:
    return read_bytes(Path(path).read_bytes(), str(path), satellite=satellite, max_flux=max_flux)


def read_bytes(raw: bytes, name: str, *, satellite: str | None = None,
               max_flux: float = DEFAULT_MAX_FLUX) -> ReadResult:
    """Read one file's (or feed response's) bytes. An unrecognised format gives a result with `error` and one
    reject holding the first bytes, so that it is counted and dead-lettered like any bad input."""
    data, truncation = decompress(raw)
    try:
        fmt = detect_format(data)
    except UnrecognisedFormat as exc:
        result = ReadResult(name, "unknown", error=truncation or str(exc))
        result.reject("file", data[:2000].decode("utf-8", errors="replace"), truncation or str(exc))
        return result
    result = ReadResult(name, fmt)
    label = f"{fmt}:{Path(name).name}"
    hint = satellite_name(satellite) if satellite else satellite_from_name(name)
    try:
        READERS[fmt](data, result, label=label, satellite=hint, max_flux=max_flux)
    except Invalid as exc:  # the file as a whole is unusable (e.g. no satellite can be told)
        result.error = str(exc)
        result.reject("file", data[:2000].decode("utf-8", errors="replace"), str(exc))
    if truncation:
        result.error = truncation
        result.reject("end of file", "", truncation)
    result.flux = mark_stale_repeats(result.flux)
    return result


# ---- values --------------------------------------------------------------------------------------------------


def parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise Invalid(f"time tag {text!r} is not a date and time") from None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def parse_flux(value: Any, max_flux: float, band: str, *,
               blank_is_missing: bool = True) -> tuple[float | None, str | None]:
    """(flux, None) for a reading, (None, why) for a missing one; raise Invalid for what cannot be a reading."""
    if value is None:
        return None, "missing"
    if isinstance(value, str):
        text = value.strip()
        if not text and blank_is_missing:
            return None, "missing"
        try:
            number = float(text)
        except ValueError:
            raise Invalid(f"{band} flux {value!r} is not a number") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        raise Invalid(f"{band} flux {value!r} is not a number")
    if math.isnan(number):
        raise Invalid(f"{band} flux is NaN")
    if math.isinf(number):
        raise Invalid(f"{band} flux is infinite")
    if number in MISSING_SENTINELS:
        return None, "fill"
    if number < 0:
        raise Invalid(f"{band} flux {number:g} is negative")
    if number > max_flux:
        raise Invalid(f"{band} flux {number:g} W/m² is above the physical limit {max_flux:g}")
    return number, None


def parse_flag(value: Any, band: str) -> str | None:
    """None for a clean quality flag, `flagged:<value>` otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise Invalid(f"{band} quality flag {value!r} is not a number") from None
    if math.isnan(number):
        raise Invalid(f"{band} quality flag is NaN")
    return None if number == 0 else f"flagged:{int(number)}"


def combine_quality(a_missing: str | None, b_missing: str | None) -> str:
    """One quality word: the long band's problem first (it decides whether the minute is usable)."""
    if b_missing:
        return b_missing
    if a_missing:
        return f"xrsa_{a_missing}"
    return GOOD


def flux_record(
    satellite: str, time_tag: datetime, cadence: int, source: str, a: tuple[float | None, str | None],
    b: tuple[float | None, str | None], extra_missing: str | None = None,
) -> FluxRecord:
    a_value, a_missing = a
    b_value, b_missing = b
    if extra_missing:
        a_value, b_value, a_missing, b_missing = None, None, extra_missing, extra_missing
    return FluxRecord(
        satellite, time_tag, cadence, scaling_era(satellite), a_value, b_value,
        combine_quality(a_missing, b_missing), source,
    )


class SeriesOrder:
    """Time tags of one satellite and cadence must strictly increase: a repeat is a duplicate, a step back is
    out of order. Either is rejected rather than silently re-sorted, since it says the file is damaged."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, int], datetime] = {}

    def check(self, satellite: str, cadence: int, time_tag: datetime) -> None:
        key = (satellite, cadence)
        last = self._last.get(key)
        if last is not None:
            if time_tag == last:
                raise Invalid(f"duplicate time tag {time_tag.isoformat()} for {satellite}")
            if time_tag < last:
                raise Invalid(f"time tag {time_tag.isoformat()} goes backwards (after {last.isoformat()})")
        self._last[key] = time_tag


def mark_stale_repeats(records: list[FluxRecord]) -> list[FluxRecord]:
    """Readings repeated unchanged for STALE_RUN_MINUTES consecutive minutes or more are carried-forward
    values, not measurements: all but the first of the run become missing ("stale_repeat")."""
    out = list(records)
    run_start = 0
    for i in range(1, len(out) + 1):
        if i < len(out):
            current, previous = out[i], out[i - 1]
            # The cheap inequality first: almost every minute differs from the one before.
            if (
                current.xrsb_flux == previous.xrsb_flux
                and current.xrsb_flux is not None
                and current.xrsa_flux == previous.xrsa_flux
                and current.cadence_seconds == 60
                and current.satellite == previous.satellite
                and (current.time_tag - previous.time_tag).total_seconds() == 60
            ):
                continue
        if i - run_start >= STALE_RUN_MINUTES:
            for j in range(run_start + 1, i):
                out[j] = replace(out[j], xrsa_flux=None, xrsb_flux=None, quality="stale_repeat")
        run_start = i
    return out


def _require_satellite(satellite: str | None, fmt: str) -> str:
    if satellite is None:
        raise Invalid(
            f"{fmt}: neither the content nor the file name says which satellite; name it (--satellite GOES-15)")
    try:
        scaling_era(satellite)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return satellite


# ---- flux readers --------------------------------------------------------------------------------------------


def _text_lines(data: bytes) -> list[str]:
    return data.decode("utf-8", errors="replace").splitlines()


def _new_avg_satellite(lines: list[str]) -> str | None:
    for line in lines:
        if "satellite_id" in line and "=" in line:
            return satellite_name(line.split("=", 1)[1].strip().strip(";").strip().strip('"'))
        if line.startswith("File name:"):
            return satellite_from_name(line.split(":", 1)[1].strip())
    return None


def read_flux_csv(data: bytes, result: ReadResult, *, label: str, satellite: str | None, max_flux: float) -> None:
    lines = _text_lines(data)
    first = 0
    if result.format == "noaa_new_avg_csv":
        data_line = next((i for i, line in enumerate(lines) if line.strip().startswith("data:")), None)
        if data_line is not None:
            satellite = _new_avg_satellite(lines[:data_line]) or satellite
            first = data_line + 1
    while first < len(lines) and not lines[first].strip():
        first += 1
    layout = FLUX_CSV_LAYOUTS[result.format]
    satellite = _require_satellite(satellite, result.format)
    header = [name.strip() for name in next(csv.reader([lines[first]]))]
    column = {name: header.index(name) for name in header}
    t, a, b = column[layout["time"]], column[layout["a"]], column[layout["b"]]
    a_flag, b_flag = column.get(layout.get("a_flag", "")), column.get(layout.get("b_flag", ""))
    missing_flag = column.get(layout.get("missing_flag", ""))
    cadence, width = layout["cadence"], len(header)
    order = SeriesOrder()
    rows = csv.reader(lines[first + 1:])
    for line_number, row in enumerate(rows, start=first + 2):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        result.records_read += 1
        try:
            if len(row) != width:
                raise Invalid(f"expected {width} fields ({', '.join(header)}), got {len(row)}")
            time_tag = parse_time(row[t])
            a_reading = parse_flux(row[a], max_flux, "xrsa")
            b_reading = parse_flux(row[b], max_flux, "xrsb")
            if a_flag is not None and (flag := parse_flag(row[a_flag], "xrsa")):
                a_reading = (None, flag)
            if b_flag is not None and (flag := parse_flag(row[b_flag], "xrsb")):
                b_reading = (None, flag)
            source_missing = None
            if missing_flag is not None and parse_flag(row[missing_flag], "missing"):
                source_missing = "missing"
            order.check(satellite, cadence, time_tag)
        except Invalid as exc:
            result.reject(f"line {line_number}", ",".join(row), str(exc))
            continue
        result.flux.append(flux_record(satellite, time_tag, cadence, label, a_reading, b_reading, source_missing))


def read_new_avg_netcdf(data: bytes, result: ReadResult, *, label: str, satellite: str | None, max_flux: float) -> None:
    import netCDF4

    try:
        dataset = netCDF4.Dataset("in-memory.nc", memory=data)
    except OSError as exc:
        raise Invalid(f"netCDF file cannot be opened: {exc}") from None
    with dataset:
        dataset.set_auto_mask(False)
        if "satellite_id" in dataset.ncattrs():
            satellite = satellite_name(str(dataset.getncattr("satellite_id")))
        satellite = _require_satellite(satellite, result.format)
        missing = [name for name in ("time_tag", "A_AVG", "B_AVG") if name not in dataset.variables]
        if missing:
            raise Invalid(f"netCDF file lacks the variables {', '.join(missing)}")
        values = {name: dataset.variables[name][:].tolist() for name in
                  ("time_tag", "A_AVG", "B_AVG", "A_QUAL_FLAG", "B_QUAL_FLAG") if name in dataset.variables}
    read_minute_columns(
        result, values, satellite=satellite, label=label, time_name="time_tag",
        to_time=lambda millis: datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=millis),
        bands=(("A_AVG", "A_QUAL_FLAG", "xrsa"), ("B_AVG", "B_QUAL_FLAG", "xrsb")),
        reading=lambda name, value, band: parse_flux(value, max_flux, band))


def read_minute_columns(
    result: ReadResult, values: dict[str, list], *, satellite: str, label: str, time_name: str,
    to_time: Callable[[float], datetime], bands: tuple[tuple[str, str, str], ...],
    reading: Callable[[str, Any, str], tuple[float | None, str | None]],
) -> None:
    """The 1-minute records of a netCDF file's columns, in order: `to_time` turns the time column's numbers into
    instants, each of `bands` is (flux variable, flag variable, band) for XRS-A then XRS-B, and a flagged reading
    is a gap with its flag. A record that fails is rejected with its raw values; the rest are read."""
    def band_reading(i: int, flux_name: str, flag_name: str, band: str) -> tuple[float | None, str | None]:
        value = reading(flux_name, values[flux_name][i], band)
        flag = parse_flag(values[flag_name][i], band) if flag_name in values else None
        return (None, flag) if flag else value

    order = SeriesOrder()
    for i, number in enumerate(values[time_name]):
        result.records_read += 1
        try:
            if not math.isfinite(number):
                raise Invalid(f"{time_name} {number!r} is not a time")
            time_tag = to_time(number)
            a_reading, b_reading = (band_reading(i, *names) for names in bands)
            order.check(satellite, 60, time_tag)
        except Invalid as exc:
            raw = json.dumps({name: column[i] for name, column in values.items()})
            result.reject(f"record {i + 1}", raw, str(exc))
            continue
        result.flux.append(flux_record(satellite, time_tag, 60, label, a_reading, b_reading))


GOES_R_EPOCH_UNITS = re.compile(r"^seconds since (\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.0+)?(?: ?UTC| ?Z)?$")


def _goes_r_epoch(units: str) -> datetime:
    """The epoch of GOES-R L2 time variables ("seconds since 2000-01-01 12:00:00", i.e. J2000), from their units."""
    match = GOES_R_EPOCH_UNITS.match(units.strip())
    if match is None:
        raise Invalid(f"time units {units!r} are not 'seconds since <date> <time>'")
    return datetime.fromisoformat(f"{match.group(1)}T{match.group(2)}").replace(tzinfo=timezone.utc)


def read_goes_r_avg1m_netcdf(
    data: bytes, result: ReadResult, *, label: str, satellite: str | None, max_flux: float,
) -> None:
    """GOES-R XRS L2 1-minute averages (sci_xrsf-l2-avg1m_gNN_dYYYYMMDD_vX-Y-Z.nc): `time` in seconds since
    2000-01-01 12:00:00 UTC, `xrsa_flux`/`xrsb_flux` in true flux units (no SWPC scaling), `xrsa_flag`/`xrsb_flag`
    non-zero for a reading NOAA flags. Fill values and NaN are gaps, as in NOAA's own files."""
    import netCDF4

    try:
        dataset = netCDF4.Dataset("in-memory.nc", memory=data)
    except OSError as exc:
        raise Invalid(f"netCDF file cannot be opened: {exc}") from None
    with dataset:
        dataset.set_auto_mask(False)
        # NOAA's files name themselves in the global attribute `id` (sunpy's XRSTimeSeries reads the satellite
        # there); `platform` ("g16") where a file has it
        attributes = {name: str(dataset.getncattr(name)) for name in ("id", "platform") if name in dataset.ncattrs()}
        named = satellite_from_name(attributes.get("id", "")) or (
            satellite_name(attributes["platform"]) if "platform" in attributes else None)
        satellite = _require_satellite(named if named and named.startswith("GOES-") else satellite, result.format)
        epoch = _goes_r_epoch(str(getattr(dataset.variables["time"], "units", "")))
        fills = {name: getattr(dataset.variables[name], "_FillValue", None) for name in ("xrsa_flux", "xrsb_flux")
                 if name in dataset.variables}
        values = {name: dataset.variables[name][:].tolist() for name in
                  ("time", "xrsa_flux", "xrsb_flux", "xrsa_flag", "xrsb_flag") if name in dataset.variables}
    if "xrsa_flux" not in values:
        raise Invalid("netCDF file lacks the variable xrsa_flux")

    def reading(name: str, value: Any, band: str) -> tuple[float | None, str | None]:
        if (isinstance(value, float) and math.isnan(value)) or (fills.get(name) is not None and value == fills[name]):
            return None, "fill"
        return parse_flux(value, max_flux, band)

    read_minute_columns(
        result, values, satellite=satellite, label=label, time_name="time",
        to_time=lambda seconds: epoch + timedelta(seconds=round(seconds, 3)),
        bands=(("xrsa_flux", "xrsa_flag", "xrsa"), ("xrsb_flux", "xrsb_flag", "xrsb")), reading=reading)


PARQUET_BANDS = (("short_band", "long_band"), ("xrsa_flux", "xrsb_flux"))


def read_goes_parquet(data: bytes, result: ReadResult, *, label: str, satellite: str | None, max_flux: float) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise Invalid(f"parquet file cannot be read: {exc}") from None
    names = set(table.column_names)
    bands = next((pair for pair in PARQUET_BANDS if set(pair) <= names), None)
    time_column = next((name for name in ("time", "time_tag") if name in names), None)
    if bands is None or time_column is None:
        raise Invalid(f"parquet columns {sorted(names)} hold no time and XRS bands")
    satellite = _require_satellite(satellite, result.format)
    try:  # microseconds give plain datetimes (nanoseconds would give pandas Timestamps)
        time_type = pa.timestamp("us", tz=table.schema.field(time_column).type.tz)
        times = table.column(time_column).cast(time_type).to_pylist()
    except (pa.ArrowException, AttributeError) as exc:
        raise Invalid(f"parquet column {time_column!r} is not a time: {exc}") from None
    a_values, b_values = table.column(bands[0]).to_pylist(), table.column(bands[1]).to_pylist()
    order = SeriesOrder()
    for i, (time_value, a_value, b_value) in enumerate(zip(times, a_values, b_values)):
        result.records_read += 1
        try:
            if not isinstance(time_value, datetime):
                raise Invalid(f"time {time_value!r} is not a time")
            time_tag = (time_value.replace(tzinfo=timezone.utc) if time_value.tzinfo is None
                        else time_value.astimezone(timezone.utc))
            # In a binary float column NaN is how a gap is written, not a damaged cell.
            a_reading = ((None, "missing") if a_value is not None and math.isnan(a_value)
                         else parse_flux(a_value, max_flux, "xrsa"))
            b_reading = ((None, "missing") if b_value is not None and math.isnan(b_value)
                         else parse_flux(b_value, max_flux, "xrsb"))
            order.check(satellite, 60, time_tag)
        except Invalid as exc:
            result.reject(f"row {i + 1}", json.dumps([str(time_value), a_value, b_value]), str(exc))
            continue
        result.flux.append(flux_record(satellite, time_tag, 60, label, a_reading, b_reading))


def _json_records(text: str) -> tuple[list[Any], str | None]:
    """The elements of a JSON array; a cut-off array gives the complete elements before the cut and why."""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        pass
    else:
        if isinstance(payload, list):
            return payload, None
        raise Invalid(f"expected a JSON array of readings, got {type(payload).__name__}")
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    records: list[Any] = []
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if position >= len(text) or text[position] == "]":
            return records, f"JSON array is cut off after {len(records)} records"
        try:
            element, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            return records, f"JSON is cut off or damaged after {len(records)} records: {exc.msg}"
        records.append(element)


def read_swpc_json(data: bytes, result: ReadResult, *, label: str, satellite: str | None, max_flux: float) -> None:
    """SWPC's xrays-*.json: one record per band and minute; the two bands of a minute become one reading."""
    records, damage = _json_records(data.decode("utf-8", errors="replace"))
    minutes: dict[tuple[str, datetime], dict[str, tuple[float | None, str | None]]] = {}
    for i, record in enumerate(records):
        result.records_read += 1
        try:
            if not isinstance(record, dict):
                raise Invalid(f"expected an object, got {type(record).__name__}")
            missing = [key for key in ("time_tag", "satellite", "flux", "energy") if key not in record]
            if missing:
                raise Invalid(f"lacks {', '.join(missing)}")
            band = record["energy"]
            if band not in (A_BAND, B_BAND):
                raise Invalid(f"energy {band!r} is neither {A_BAND} nor {B_BAND}")
            name = satellite_name(record["satellite"])
            _require_satellite(name, "swpc_json")
            time_tag = parse_time(str(record["time_tag"]))
            reading = parse_flux(record["flux"], max_flux, "xrsa" if band == A_BAND else "xrsb")
            bands = minutes.setdefault((name, time_tag), {})
            if band in bands:
                raise Invalid(f"duplicate {band} reading for {name} at {time_tag.isoformat()}")
            bands[band] = reading
        except Invalid as exc:
            result.reject(f"record {i + 1}", json.dumps(record, default=str), str(exc))
    order = SeriesOrder()
    for (name, time_tag), bands in minutes.items():
        try:
            order.check(name, 60, time_tag)
        except Invalid as exc:
            result.reject(f"minute {time_tag.isoformat()}",
                          json.dumps({"satellite": name, "time_tag": time_tag.isoformat()}), str(exc))
            continue
        result.flux.append(flux_record(
            name, time_tag, 60, label, bands.get(A_BAND, (None, "missing")), bands.get(B_BAND, (None, "missing")),
        ))
    if damage:
        result.error = damage
        result.reject("end of input", "", damage)


# ---- flare catalogues ----------------------------------------------------------------------------------------

CATALOG_SOURCES = {
    "swpc_flarelist_sc24_csv": "catalog:swpc_sc24",
    "swpc_flarelist_1996_csv": "catalog:swpc_1996_2015",
    "ngdc_xrs_report": "catalog:ngdc",
}
# NOAA's lists before the GOES-16 era give classes on the SWPC-scaled flux.
TRUE_FLUX_LISTS_FROM = datetime(2017, 1, 1, tzinfo=timezone.utc)


def catalog_flare(
    source: str, start: datetime, peak: datetime, end: datetime | None, goes_class: str,
    satellite: str | None = None, region: str | None = None, listed_peak_flux: float | None = None,
) -> FlareObserved:
    """A catalogue row as a flare event. Dates roll over midnight as NOAA's lists need (a peak or end earlier
    than the start is on the next day); class and peak flux must agree."""
    if peak < start:
        peak += ONE_DAY
    if end is not None and end < start:
        end += ONE_DAY
    if end is not None and end < peak:
        raise Invalid(f"end {end:%Y-%m-%d %H:%M} is before the peak {peak:%Y-%m-%d %H:%M}")
    # NOAA's 4-character class field cuts X17.2 to "X17."
    goes_class = goes_class.strip().rstrip(".")
    try:
        peak_flux = flux_of_class(goes_class)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    if not peak_flux > 0:
        raise Invalid(f"class {goes_class} names no flux")
    if listed_peak_flux is not None and not math.isclose(listed_peak_flux, peak_flux, rel_tol=1e-3):
        raise Invalid(f"class {goes_class} and listed peak flux {listed_peak_flux:g} disagree")
    try:
        era: ScalingEra = (scaling_era(satellite) if satellite
                           else "swpc_scaled" if peak < TRUE_FLUX_LISTS_FROM else "true_flux")
    except ValueError:
        era = "swpc_scaled" if peak < TRUE_FLUX_LISTS_FROM else "true_flux"
    return FlareObserved(
        message_id=stable_id(source, start.isoformat(), peak.isoformat()), event_time=peak,
        start_time=start, peak_time=peak, end_time=end, goes_class=goes_class, class_letter=goes_class[0],
        peak_flux=peak_flux, source=source, satellite=satellite, scaling_era=era, noaa_region=region,
    )


def _region(text: str | None) -> str | None:
    text = (text or "").strip()
    return None if text in ("", "0", "nan") else text


def _hhmm_on(day: datetime, text: str, what: str) -> datetime:
    """HHMM after the midnight `day`; NGDC writes times past midnight of the event's day as 24xx, 25xx..."""
    text = text.strip()
    if not re.fullmatch(r"\d{4}", text) or int(text[:2]) > 47 or int(text[2:]) > 59:
        raise Invalid(f"{what} time {text!r} is not HHMM")
    return day + timedelta(hours=int(text[:2]), minutes=int(text[2:]))


class _Dedup:
    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def check(self, flare: FlareObserved, where: str) -> None:
        first = self._seen.setdefault(flare.message_id, where)
        if first != where:
            raise Invalid(f"duplicate of the event at {first}")


def _catalog_rows(data: bytes, result: ReadResult, build: Callable[[dict[str, str]], FlareObserved]) -> None:
    lines = _text_lines(data)
    reader = csv.reader(lines)
    header = [name.strip() for name in next(reader)]
    dedup = _Dedup()
    for line_number, row in enumerate(reader, start=2):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        result.records_read += 1
        where = f"line {line_number}"
        try:
            if len(row) != len(header):
                raise Invalid(f"expected {len(header)} fields, got {len(row)}")
            flare = build(dict(zip(header, row)))
            dedup.check(flare, where)
        except Invalid as exc:
            result.reject(where, ",".join(row), str(exc))
            continue
        except ValueError as exc:  # pydantic's ValidationError is a ValueError: a field out of its schema
            result.reject(where, ",".join(row), f"not a valid flare: {exc}".splitlines()[0])
            continue
        result.flares.append(flare)


def read_sc24_list(data: bytes, result: ReadResult, **_: Any) -> None:
    source = CATALOG_SOURCES[result.format]

    def build(row: dict[str, str]) -> FlareObserved:
        goes_class = row["goes_class"].strip()
        if row.get("goes_class_ind", goes_class[:1]).strip() != goes_class[:1]:
            raise Invalid(f"class letter {row['goes_class_ind']!r} and class {goes_class!r} disagree")
        listed = row.get("goes_class_val", "").strip()
        try:
            listed_flux = float(listed) if listed else None
        except ValueError:
            raise Invalid(f"goes_class_val {listed!r} is not a number") from None
        return catalog_flare(
            source, parse_time(row["event_starttime"]), parse_time(row["event_peaktime"]),
            parse_time(row["event_endtime"]) if row["event_endtime"].strip() else None, goes_class,
            region=_region(row.get("noaa_ar")), listed_peak_flux=listed_flux,
        )

    _catalog_rows(data, result, build)


def read_1996_list(data: bytes, result: ReadResult, **_: Any) -> None:
    source = CATALOG_SOURCES[result.format]

    def build(row: dict[str, str]) -> FlareObserved:
        goes_class = row["goes_class"].strip()
        if row.get("goes_class_ind", goes_class[:1]).strip() != goes_class[:1]:
            raise Invalid(f"class letter {row['goes_class_ind']!r} and class {goes_class!r} disagree")
        start = parse_time(row["start_time"])
        satellite = satellite_name(row["goes_sat"]) if row.get("goes_sat", "").strip() else None
        midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
        return catalog_flare(
            source, start, _hhmm_on(midnight, row["max_time"], "peak"),
            parse_time(row["end_time"]) if row["end_time"].strip() else None, goes_class,
            satellite=satellite if satellite and satellite.startswith("GOES-") else None,
            region=_region(row.get("noaa_ar")),
        )

    _catalog_rows(data, result, build)


def read_ngdc_report(data: bytes, result: ReadResult, **_: Any) -> None:
    """NGDC's fixed-width GOES XRS report: cols 6-11 yymmdd, 14-17 start, 19-22 end, 24-27 peak (HHMM),
    col 60 class letter, 61-63 intensity x10, 68-71 satellite, 81-85 NOAA region."""
    source = CATALOG_SOURCES[result.format]
    dedup = _Dedup()
    for line_number, line in enumerate(_text_lines(data), start=1):
        line = line.rstrip("\r\n")
        if not line.strip(" \x1a"):  # blank, or the DOS end-of-file mark these reports end with
            continue
        result.records_read += 1
        where = f"line {line_number}"
        try:
            if len(line) < 63 or not line[:11].isdigit():
                raise Invalid("not an NGDC report line (too short or no date)")
            yy, mm, dd = int(line[5:7]), int(line[7:9]), int(line[9:11])
            try:
                day = datetime(1900 + yy if yy >= 70 else 2000 + yy, mm, dd, tzinfo=timezone.utc)
            except ValueError:
                raise Invalid(f"date {line[5:11]!r} is not a day") from None
            letter, intensity = line[59], line[60:63].strip()
            if letter not in "ABCMX" or letter == " ":
                raise Invalid("no X-ray class (an optical-only report)")
            if not intensity.isdigit():
                raise Invalid(f"intensity {line[60:63]!r} is not a number")
            if not line[23:27].strip():
                raise Invalid("no peak time")
            start = _hhmm_on(day, line[13:17], "start")
            peak = _hhmm_on(day, line[23:27], "peak")
            end = _hhmm_on(day, line[18:22], "end") if line[18:22].strip() else None
            station = line[67:71].strip() if len(line) > 67 else ""
            satellite = satellite_name(station) if station else None
            flare = catalog_flare(
                source, start, peak, end, f"{letter}{int(intensity) / 10:.1f}",
                satellite=satellite if satellite and satellite.startswith("GOES-") else None,
                region=_region(line[80:85]) if len(line) > 80 else None,
            )
            dedup.check(flare, where)
        except Invalid as exc:
            result.reject(where, line, str(exc))
            continue
        result.flares.append(flare)


READERS: dict[str, Callable[..., None]] = {
    "noaa_new_avg_csv": read_flux_csv,
    "goes_hourly_csv": read_flux_csv,
    "goes_xrs_1m_csv": read_flux_csv,
    "swpc_xray_1m_csv": read_flux_csv,
    "noaa_new_avg_netcdf": read_new_avg_netcdf,
    "goes_r_xrs_avg1m_netcdf": read_goes_r_avg1m_netcdf,
    "goes_parquet": read_goes_parquet,
    "swpc_json": read_swpc_json,
    "swpc_flarelist_sc24_csv": read_sc24_list,
    "swpc_flarelist_1996_csv": read_1996_list,
    "ngdc_xrs_report": read_ngdc_report,
}


DOCUMENTATION_NAMES = re.compile(r"^(readme|license|licence|sources|changelog|manifest)", re.IGNORECASE)


def supported_files(paths: Iterable[Path]) -> Iterator[Path]:
    """The files named, with folders expanded to the files inside them, sorted. Hidden files and a data
    set's documentation (README, LICENSE, SOURCES, MANIFEST, *.md) are skipped; every other file's format is decided
    by its content when it is read."""
    for path in map(Path, paths):
        if not path.is_dir():
            yield path
            continue
        for child in sorted(path.rglob("*")):
            if not child.is_file() or child.name.startswith("."):
                continue
            if child.suffix.lower() == ".md" or DOCUMENTATION_NAMES.match(child.name):
                continue
            yield child
