"""NOAA's archives of GOES X-ray flux and flare reports: which files a period needs, downloading them into the
data home (resumed, retried, checked), and the index of what is held.

The layouts, each as NOAA publishes it (base URLs are settings, `shared.settings.ArchiveSettings`):

- `goes-avg-1m` / `goes-avg-1m-netcdf`: GOES-8..15 "new_avg" 1-minute averages, one file per satellite and month,
  `<ncei avg>/YYYY/MM/goesNN/csv/gNN_xrs_1m_YYYYMM01_YYYYMMDD.csv` (the `netcdf/` folder holds the same month as
  `.nc`), the second date the month's last day. Layout from pyspedas (`pyspedas/projects/goes/load.py`:
  `avg/%Y/%m/goesNN/netcdf/gNN_xrs_1m_%Y%m01_%Y%m??.nc` under `remote_data_dir`
  https://www.ncei.noaa.gov/data/goes-space-environment-monitor/access/ in `config.py`) and from scripts that
  read the csv folder of the same tree (`.../avg/2018/09/goes15/csv/g15_xrs_1m_20180901_20180930.csv`, formerly
  on satdat.ngdc.noaa.gov/sem/goes/data/avg/). SWPC-scaled flux.
- `goes-r-xrs-1m`: GOES-R (16..19) XRS L2 1-minute averages, one file per satellite and day,
  `<ngdc goes>/goesNN/l2/data/xrsf-l2-avg1m_science/YYYY/MM/sci_xrsf-l2-avg1m_gNN_dYYYYMMDD_vX-Y-Z.nc`. Layout
  from sunpy's XRSClient (`sunpy/net/dataretriever/sources/goes.py`, `pattern_r`) and pyspedas' `loadr`
  (`..._d%Y%m%d_v?-?-?.nc`). The processing version in the name is not predictable, so each month's directory
  listing is read and the highest version of each day taken. True flux.
- `ngdc-xrs-reports`: NGDC's yearly GOES XRS flare reports, `<ngdc xrs>/goes-xrs-report_YYYY.txt`
  (https://www.ngdc.noaa.gov/stp/space-weather/solar-data/solar-features/solar-flares/x-rays/goes/xrs/, the
  pattern of sunpy's scraper tests and many readers); 2017, the last year, is `goes-xrs-report_2017-ytd.txt`.
  For 2015 NGDC also publishes `goes-xrs-report_2015_modifiedreplacedmissingrows.txt`; the original is fetched,
  as in the bundled data.

Checksums: we found no md5/sha checksum files published beside any of these products (NCEI's avg tree, the
GOES-R L2 tree on data.ngdc.noaa.gov, NGDC's report folder), so the sha256 of what was downloaded is recorded
in the index and checked on every later run; with `archive.checksum_sidecar` set to md5/sha256, a mirror's
`NAME.md5`/`NAME.sha256` is fetched and a download that does not match it is refused.

Stored as `<data_home>/<dataset>/<the path below the base URL>`, with `<data_home>/index.json` listing each
held file (dataset, file, period, bytes, sha256, url, fetched_at).
"""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal
from urllib.parse import unquote, urljoin, urlsplit

if TYPE_CHECKING:
    from shared.settings import ArchiveSettings, Settings


INDEX_NAME = "index.json"
CHUNK_BYTES = 1 << 16

Era = Literal["goes_avg", "goes_r", "ngdc_reports"]


@dataclass(frozen=True)
class Dataset:
    name: str
    era: Era
    description: str
    satellites: tuple[int, ...] = ()
    folder: str = ""  # new_avg: csv or netcdf


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("goes-avg-1m", "goes_avg", "GOES-13/14/15 new_avg 1-minute XRS averages, monthly CSV (NCEI; SWPC-scaled)",
            (13, 14, 15), "csv"),
    Dataset("goes-avg-1m-netcdf", "goes_avg", "the same months as netCDF-3 (NCEI's netcdf folder)", (13, 14, 15),
            "netcdf"),
    Dataset("goes-r-xrs-1m", "goes_r", "GOES-16/18/19 XRS L2 1-minute averages, daily netCDF (NGDC; true flux)",
            (16, 17, 18, 19)),
    Dataset("ngdc-xrs-reports", "ngdc_reports", "NGDC GOES XRS flare reports, yearly fixed-width text, 1975-2017"),
)}

# The satellite fetched when none is named, by first day. GOES-14 until GOES-15 took over after October 2010 (the
# SWPC list takes Sep/Oct 2010 flares from GOES-14; NGDC's reports name G15 from January 2011); NCEI's GOES-8..15
# averages end with GOES-15 in March 2020 (sunpy searches them up to 2020-03-04).
DEFAULT_AVG_SATELLITES = ((date(2009, 12, 1), 14), (date(2010, 11, 1), 15), (date(2020, 3, 5), None))
# GOES-R data start on 2017-02-07 (sunpy's XRSClient); GOES-16 was GOES-East until GOES-19 replaced it on
# 2025-04-07; from then the SWPC primary X-ray feed we recorded (2026) is GOES-18.
DEFAULT_GOES_R_SATELLITES = ((date(2017, 2, 7), 16), (date(2025, 4, 7), 18))
NGDC_FIRST_YEAR, NGDC_LAST_YEAR = 1975, 2017


class PlanError(ValueError):
    """A period or satellite the dataset cannot serve; the message says why and what to do."""


@dataclass(frozen=True)
class RemoteFile:
    dataset: str
    url: str
    path: str  # below the data home: <dataset>/<NOAA's path below the base URL>
    first_day: date
    last_day: date
    satellite: str | None = None


@dataclass(frozen=True)
class MonthListing:
    """A GOES-R month directory: its files' names carry a processing version only the listing tells."""
    dataset: str
    url: str
    path: str
    satellite: int
    days: tuple[date, ...]


# ---- planning ------------------------------------------------------------------------------------------------


def dataset(name: str) -> Dataset:
    try:
        return DATASETS[name]
    except KeyError:
        raise PlanError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def days_of(start: date, end: date) -> Iterator[date]:
    """Every day from start to end, both included."""
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def _default_satellite(table: tuple[tuple[date, int | None], ...], day: date) -> int | None:
    chosen = None
    for since, satellite in table:
        if day >= since:
            chosen = satellite
    return chosen


def _satellites_for(ds: Dataset, day: date, satellites: tuple[int, ...] | None) -> tuple[int, ...]:
    if satellites:
        return satellites
    table = DEFAULT_AVG_SATELLITES if ds.era == "goes_avg" else DEFAULT_GOES_R_SATELLITES
    chosen = _default_satellite(table, day)
    if chosen is None:
        if ds.era == "goes_avg":
            raise PlanError(f"{ds.name}: no default satellite for {day:%Y-%m-%d} (the default covers "
                            f"{table[0][0]:%Y-%m-%d} to {table[-1][0] - timedelta(days=1):%Y-%m-%d}); "
                            "name one with --satellite")
        raise PlanError(f"{ds.name}: GOES-R data start on {table[0][0]:%Y-%m-%d}")
    return (chosen,)


def _check_satellites(ds: Dataset, satellites: tuple[int, ...] | None) -> None:
    if satellites and not ds.satellites:
        raise PlanError(f"{ds.name} has no satellite to choose; leave out --satellite")
    wrong = [s for s in satellites or () if s not in ds.satellites]
    if wrong:
        raise PlanError(f"{ds.name} holds GOES-{', GOES-'.join(map(str, ds.satellites))}, not GOES-{wrong[0]}")


def plan(name: str, start: date, end: date, archive: ArchiveSettings,
         satellites: tuple[int, ...] | None = None) -> list[RemoteFile | MonthListing]:
    """The files (or, for GOES-R, the month listings) that cover every day from start to end inclusive."""
    ds = dataset(name)
    if end < start:
        raise PlanError(f"the period ends ({end}) before it starts ({start})")
    _check_satellites(ds, satellites)
    if ds.era == "ngdc_reports":
        return _plan_reports(ds, start, end, archive)
    if ds.era == "goes_avg":
        return _plan_avg(ds, start, end, archive, satellites)
    return _plan_goes_r(ds, start, end, archive, satellites)


def _plan_reports(ds: Dataset, start: date, end: date, archive: ArchiveSettings) -> list[RemoteFile | MonthListing]:
    if start.year > NGDC_LAST_YEAR or end.year < NGDC_FIRST_YEAR:
        raise PlanError(f"{ds.name}: NGDC's reports cover {NGDC_FIRST_YEAR}-{NGDC_LAST_YEAR}; "
                        f"{start.year}-{end.year} is outside them")
    planned: list[RemoteFile | MonthListing] = []
    for year in range(max(start.year, NGDC_FIRST_YEAR), min(end.year, NGDC_LAST_YEAR) + 1):
        name = f"goes-xrs-report_{year}{'-ytd' if year == NGDC_LAST_YEAR else ''}.txt"
        planned.append(RemoteFile(ds.name, urljoin(archive.ngdc_reports_base_url, name), f"{ds.name}/{name}",
                                  date(year, 1, 1), date(year, 12, 31)))
    return planned


def _months(start: date, end: date) -> Iterator[tuple[int, int]]:
    year, month = start.year, start.month
    while (year, month) <= (end.year, end.month):
        yield year, month
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def _plan_avg(ds: Dataset, start: date, end: date, archive: ArchiveSettings,
              satellites: tuple[int, ...] | None) -> list[RemoteFile | MonthListing]:
    planned: list[RemoteFile | MonthListing] = []
    extension = "csv" if ds.folder == "csv" else "nc"
    for year, month in _months(start, end):
        first, last = date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])
        needed = sorted({s for day in days_of(max(first, start), min(last, end))
                         for s in _satellites_for(ds, day, satellites)})
        for number in needed:
            relative = (f"{year:04d}/{month:02d}/goes{number:02d}/{ds.folder}/"
                        f"g{number:02d}_xrs_1m_{first:%Y%m%d}_{last:%Y%m%d}.{extension}")
            planned.append(RemoteFile(ds.name, urljoin(archive.ncei_avg_base_url, relative), f"{ds.name}/{relative}",
                                      first, last, f"GOES-{number}"))
    return planned


def _plan_goes_r(ds: Dataset, start: date, end: date, archive: ArchiveSettings,
                 satellites: tuple[int, ...] | None) -> list[RemoteFile | MonthListing]:
    months: dict[tuple[int, int, int], list[date]] = {}
    for day in days_of(start, end):
        try:
            chosen = _satellites_for(ds, day, satellites)
        except PlanError:
            if day < DEFAULT_GOES_R_SATELLITES[0][0] and end >= DEFAULT_GOES_R_SATELLITES[0][0]:
                continue  # a period reaching into GOES-R gets the GOES-R part
            raise
        for number in chosen:
            months.setdefault((number, day.year, day.month), []).append(day)
    planned: list[RemoteFile | MonthListing] = []
    for (number, year, month), days in sorted(months.items(), key=lambda item: (item[0][1], item[0][2], item[0][0])):
        relative = f"goes{number}/l2/data/xrsf-l2-avg1m_science/{year:04d}/{month:02d}/"
        planned.append(MonthListing(ds.name, urljoin(archive.goes_r_base_url, relative), f"{ds.name}/{relative}",
                                    number, tuple(days)))
    return planned


GOES_R_NAME = re.compile(r"^sci_xrsf-l2-avg1m_g(\d{2})_d(\d{8})_v(\d+)-(\d+)-(\d+)\.nc$")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.extend(value for name, value in attrs if name == "href" and value)


def files_in_listing(listing: MonthListing, html: str) -> tuple[list[RemoteFile], list[date]]:
    """The files of the listing's days named in a directory page (the highest version of each day), and the
    days it has no file for."""
    parser = _Links()
    parser.feed(html)
    best: dict[date, tuple[tuple[int, int, int], str]] = {}
    for href in parser.hrefs:
        name = unquote(urlsplit(href).path.rstrip("/").rsplit("/", 1)[-1])
        match = GOES_R_NAME.match(name)
        if not match or int(match.group(1)) != listing.satellite:
            continue
        day = datetime.strptime(match.group(2), "%Y%m%d").date()
        version = (int(match.group(3)), int(match.group(4)), int(match.group(5)))
        if day in listing.days and (day not in best or version > best[day][0]):
            best[day] = (version, name)
    files = [RemoteFile(listing.dataset, urljoin(listing.url, name), listing.path + name, day, day,
                        f"GOES-{listing.satellite}") for day, (_, name) in sorted(best.items())]
    return files, [day for day in listing.days if day not in best]


# ---- the index -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldFile:
    dataset: str
    file: str
    path: str  # below the data home
    first_day: str
    last_day: str
    satellite: str | None
    bytes: int
    sha256: str
    url: str
    fetched_at: str
    checksum: str  # how the download was checked


def index_path(data_home: Path) -> Path:
    return data_home / INDEX_NAME


def read_index(data_home: Path) -> dict[str, HeldFile]:
    path = index_path(data_home)
    if not path.exists():
        return {}
    try:
        entries = json.loads(path.read_text())["files"]
        return {entry["path"]: HeldFile(**entry) for entry in entries}
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a data index ({exc}); move it away to start a new one") from None


def write_index(data_home: Path, held: dict[str, HeldFile]) -> None:
    """Atomically: an interrupted run leaves the previous index or the new one, never half of one."""
    path = index_path(data_home)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    entries = [asdict(entry) for _, entry in sorted(held.items())]
    temporary.write_text(json.dumps({"version": 1, "files": entries}, indent=1) + "\n")
    os.replace(temporary, path)


def held_files(data_home: Path, name: str, start: date | None = None, end: date | None = None) -> list[Path]:
    """The held files of a dataset whose period meets [start, end] (both days included), oldest first."""
    dataset(name)
    chosen = []
    for entry in read_index(data_home).values():
        if entry.dataset != name:
            continue
        first, last = date.fromisoformat(entry.first_day), date.fromisoformat(entry.last_day)
        if (start and last < start) or (end and first > end):
            continue
        chosen.append((entry.first_day, entry.path))
    return [data_home / path for _, path in sorted(chosen)]


def expand_dataset_names(
    paths: list[Path], data_home: Path, start: datetime | None, end: datetime | None,
) -> list[Path]:
    """The paths as given, with each dataset name (one that is not also a file or folder here) replaced by the
    held files of that dataset meeting [start, end); a name with nothing held is a PlanError saying how to fetch."""
    expanded: list[Path] = []
    for path in paths:
        name = str(path)
        if name not in DATASETS or path.exists():
            expanded.append(path)
            continue
        first = start.astimezone(timezone.utc).date() if start else None
        last = (end - timedelta(microseconds=1)).astimezone(timezone.utc).date() if end else None
        files = held_files(data_home, name, first, last)
        if not files:
            period = f" from {first or 'the start'} to {last or 'the end'}" if first or last else ""
            raise PlanError(f"no {name} files are held in {data_home}{period}; fetch them first: "
                            f"flare data fetch {name} --from {first or 'DAY'} --to {last or 'DAY'}")
        expanded.extend(files)
    return expanded


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_held(data_home: Path, entry: HeldFile | None) -> bool:
    """Held means on disk with the recorded size and sha256: a damaged or replaced file is fetched again."""
    if entry is None:
        return False
    path = data_home / entry.path
    return path.is_file() and path.stat().st_size == entry.bytes and file_digest(path) == entry.sha256


# ---- downloading ---------------------------------------------------------------------------------------------


class Missing(Exception):
    """NOAA has no such file or month (404): reported and skipped."""


class ChecksumMismatch(Exception):
    """The download does not match the checksum published beside it: refused."""


class Incomplete(Exception):
    """The connection ended before the whole file arrived: the part is kept and the next attempt resumes it."""


class ServerError(Exception):
    """A 5xx answer or another status worth asking again."""


@dataclass
class FetchReport:
    dataset: str
    fetched: list[HeldFile] = field(default_factory=list)
    already_held: list[HeldFile] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


Progress = Callable[[str, int | None, int], Any]  # (file name, total bytes or None, bytes already held) -> bar


def _retrying(archive: ArchiveSettings):
    import httpx
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

    return Retrying(
        stop=stop_after_attempt(archive.http_retries + 1),
        wait=wait_exponential(multiplier=archive.retry_backoff_seconds, max=60),
        retry=retry_if_exception_type((ServerError, Incomplete, httpx.TransportError)),
        reraise=True,
    )


def _check_status(response, url: str) -> None:
    if response.status_code == 404:
        raise Missing(f"{url}: 404 not found")
    if response.status_code >= 500 or response.status_code in (408, 429):
        raise ServerError(f"{url}: HTTP {response.status_code}")
    if response.status_code >= 400:
        raise Missing(f"{url}: HTTP {response.status_code}")


def get_text(client, url: str, archive: ArchiveSettings) -> str:
    """A small document (a listing, a checksum), retried like a download."""
    for attempt in _retrying(archive):
        with attempt:
            response = client.get(url)
            _check_status(response, url)
            return response.text
    raise AssertionError("unreachable")


def published_checksum(client, url: str, archive: ArchiveSettings) -> tuple[str, str] | None:
    """(algorithm, hex digest) from the mirror's sidecar file, or None where none is configured or published."""
    if archive.checksum_sidecar == "none":
        return None
    try:
        text = get_text(client, f"{url}.{archive.checksum_sidecar}", archive)
    except Missing:
        return None
    token = text.split()[0].lower() if text.split() else ""
    length = 32 if archive.checksum_sidecar == "md5" else 64
    if not re.fullmatch(rf"[0-9a-f]{{{length}}}", token):
        raise ChecksumMismatch(f"{url}.{archive.checksum_sidecar} holds no {archive.checksum_sidecar} digest")
    return archive.checksum_sidecar, token


def _download_once(client, url: str, part: Path, progress: Progress) -> None:
    """One attempt: resume `part` from its size with an HTTP Range request; raise Incomplete if the body ends
    early. A server that ignores the Range (200) sends the whole file again, which replaces the part."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 416 and offset:  # the part already holds every byte
            total = _content_range_total(response.headers.get("content-range"))
            if total == offset:
                return
            part.unlink()
            raise Incomplete(f"{url}: the partial download does not fit the file; starting again")
        _check_status(response, url)
        if response.status_code == 206:
            total = _content_range_total(response.headers.get("content-range"))
            mode = "ab"
        else:
            offset, mode = 0, "wb"
            length = response.headers.get("content-length")
            total = int(length) if length and length.isdigit() else None
        bar = progress(part.name.removesuffix(".part"), total, offset)
        try:
            with part.open(mode) as handle:
                for chunk in response.iter_raw():  # as it arrives: a cut keeps every byte received
                    handle.write(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()
    size = part.stat().st_size
    if total is not None and size < total:
        raise Incomplete(f"{url}: {size} of {total} bytes arrived")


def _content_range_total(value: str | None) -> int | None:
    match = re.match(r"bytes (?:\d+-\d+|\*)/(\d+)", value or "")
    return int(match.group(1)) if match else None


def download(client, remote: RemoteFile, data_home: Path, archive: ArchiveSettings, progress: Progress) -> HeldFile:
    """Download one file into the data home via `<name>.part`, resuming a part left by an earlier run."""
    target = data_home / remote.path
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    published = published_checksum(client, remote.url, archive)
    for attempt in _retrying(archive):
        with attempt:
            _download_once(client, remote.url, part, progress)
    checksum = "none published; sha256 recorded"
    if published:
        algorithm, expected = published
        actual = file_digest(part, algorithm)
        if actual != expected:
            part.unlink()
            raise ChecksumMismatch(f"{remote.url}: {algorithm} {actual} does not match the published {expected}")
        checksum = f"{algorithm} matches {remote.url.rsplit('/', 1)[-1]}.{algorithm}"
    sha256 = file_digest(part)
    os.replace(part, target)
    return HeldFile(remote.dataset, target.name, remote.path, remote.first_day.isoformat(), remote.last_day.isoformat(),
                    remote.satellite, target.stat().st_size, sha256, remote.url,
                    datetime.now(timezone.utc).isoformat(timespec="seconds"), checksum)


def _client(archive: ArchiveSettings):
    import httpx

    return httpx.Client(timeout=archive.http_timeout_seconds, follow_redirects=True,
                        # identity: the bytes stored are the file's, so a Range offset counts in them
                        headers={"User-Agent": "flare-plus data fetch", "Accept-Encoding": "identity"})


def fetch(settings: Settings, name: str, start: date, end: date, *, satellites: tuple[int, ...] | None = None,
          progress: Progress, client=None) -> FetchReport:
    """Fetch every file of the dataset covering start..end that is not already held, recording each in the
    index as soon as it is complete. A missing file or month is reported and skipped; a failed download
    (retries exhausted, checksum refused) is reported and the rest still fetched."""
    import httpx

    archive, data_home = settings.archive, settings.data_home
    planned = plan(name, start, end, archive, satellites)
    report = FetchReport(name)
    held = read_index(data_home)
    own_client = client is None
    client = client or _client(archive)
    try:
        for item in planned:
            if isinstance(item, MonthListing):
                remote_files = _resolve_listing(client, item, held, data_home, archive, report)
            else:
                remote_files = [item]
            for remote in remote_files:
                entry = held.get(remote.path)
                if _is_held(data_home, entry):
                    report.already_held.append(entry)  # type: ignore[arg-type]
                    continue
                try:
                    fetched = download(client, remote, data_home, archive, progress)
                except Missing as exc:
                    report.missing.append((remote.path, str(exc)))
                    continue
                except (ChecksumMismatch, ServerError, Incomplete, httpx.HTTPError) as exc:
                    report.failed.append((remote.path, str(exc) or type(exc).__name__))
                    continue
                held[remote.path] = fetched
                write_index(data_home, held)
                report.fetched.append(fetched)
    finally:
        if own_client:
            client.close()
    return report


def _resolve_listing(client, listing: MonthListing, held: dict[str, HeldFile], data_home: Path,
                     archive: ArchiveSettings, report: FetchReport) -> list[RemoteFile]:
    """The month's files not held yet (the held ones are reported as such, each verified once); a month whose
    every asked-for day is held needs no listing."""
    import httpx

    asked = set(listing.days)
    held_days = {day: entry for entry in held.values()
                 if entry.path.startswith(listing.path) and (day := date.fromisoformat(entry.first_day)) in asked
                 and _is_held(data_home, entry)}
    if all(day in held_days for day in listing.days):
        report.already_held.extend(held_days[day] for day in listing.days)
        return []
    try:
        html = get_text(client, listing.url, archive)
    except Missing as exc:
        report.missing.append((listing.path, f"no month directory: {exc}"))
        return []
    except (ServerError, httpx.HTTPError) as exc:
        report.failed.append((listing.path, f"listing: {exc}"))
        return []
    files, absent = files_in_listing(listing, html)
    for day in absent:
        report.missing.append((f"{listing.path}*_d{day:%Y%m%d}_*.nc", "no file for this day in the listing"))
    verified = {entry.path: entry for entry in held_days.values()}
    report.already_held.extend(verified[f.path] for f in files if f.path in verified)
    return [f for f in files if f.path not in verified]
