"""The one feature function: X-ray flux and flare history known at an issue time -> a feature vector.

The trainer calls `feature_table` on years of stored history (batch); the predictor keeps a `FeatureState`
fed message by message and its `features_at(t)` calls the same `feature_table` on its bounded buffer, so both
paths compute identical numbers at the same instant.

Conventions (the guarantees the models rely on):
- Hourly grid. An observation belongs to the hour its time tag falls in; the hourly mean of a bin is only
  known once the hour has ended, so a forecast at `t` uses the bins that ended by `t`. 1-minute and hourly
  readings are reduced to hourly means by the same code (`hourly_bins`).
- One scale. True-flux readings (GOES-16+) are converted to the SWPC-scaled equivalent (B x 0.7, A x 0.85)
  before anything else, so models trained on GOES-13/15 apply to both eras. Flare peaks are ranked on the
  same scale. All flux features are log10.
- Every satellite's readings are kept (storage, the predictor's buffer); features read one satellite per hour,
  the primary of that hour: the one whose XRS-B covers most of the hour, ties going to the finer cadence, then
  to the order of `satellite_preference` (the operator's primary first, as SWPC designates one), then to the
  name. So a gap in one satellite is bridged hour by hour by another's flux, and an hour is never a blend of
  two instruments (their calibrations differ by a few per cent).
- A flare counts at `t` once its peak has passed (`peak_time <= t`), among the flares the caller knew at `t`:
  the predictor passes those known by then (`FlareObserved.known_at`: a detected flare only from its end);
  the trainer's history passes every stored flare. Only flares of class C and above are used, because
  catalogues differ in whether they list B flares at all.
- No NaN. A window without data falls back to the latest hourly value; with too little flux in the last 24 h
  (`min_coverage`) or flux older than `max_staleness_minutes`, the row is marked `sufficient=False` with the
  reason and its flux features are zero: no forecast from the flux, never a guess.
- Flare history alone. The flare columns are computed at every issue time. `flare_history` says whether the
  flare record covers the lookback (some flux of any satellite in the flux lookback, so the detector was
  watching, or some catalogued flare in the flare lookback); a row without sufficient flux but with it gets a
  degraded forecast from the flare history alone, and only a row without either is "insufficient data".
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from shared import messages as m
from shared.classes import TARGET_CLASSES
from shared.settings import FeatureSettings

# SWPC-scaled flux = true flux x factor (the factors GOES-13/15 operational data carry; see SOURCES.md).
TRUE_TO_SWPC_SCALE = {"xrsa": 0.85, "xrsb": 0.7}
CLASS_RANK = {"A": 0, "B": 1, "C": 2, "M": 3, "X": 4}
CLASS_FLOOR_FLUX = {"A": 1e-8, "B": 1e-7, "C": 1e-6, "M": 1e-5, "X": 1e-4}
NO_FLARE_LOG_FLUX = -7.0  # "no flare of class C or above in the window" is written as a B1.0 peak
HOUR = pd.Timedelta(hours=1)
HOUR_NS = 3_600_000_000_000

OBSERVATION_COLUMNS = ("time_tag", "satellite", "cadence_seconds", "scaling_era", "xrsa_flux", "xrsb_flux")
FLARE_COLUMNS = ("peak_time", "peak_flux", "scaling_era", "source", "satellite")
META_COLUMNS = ("sufficient", "reason", "inputs_until", "coverage_24h", "flare_history")


@dataclass(frozen=True)
class FeatureParams:
    """The parameters a model was trained with; stored with the model so the predictor computes the same."""

    flux_windows_hours: tuple[int, ...]
    flare_count_days: tuple[int, ...]
    max_staleness_minutes: int
    min_coverage: float
    hours_since_cap_days: int
    satellite_preference: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, features: FeatureSettings) -> "FeatureParams":
        return cls(
            flux_windows_hours=tuple(sorted(set(features.flux_windows_hours))),
            flare_count_days=tuple(sorted(set(features.flare_count_days))),
            max_staleness_minutes=features.max_staleness_minutes,
            min_coverage=features.min_coverage,
            hours_since_cap_days=features.hours_since_cap_days,
            satellite_preference=tuple(features.satellite_preference),
        )

    @classmethod
    def from_dict(cls, data: Mapping) -> "FeatureParams":
        return cls(
            flux_windows_hours=tuple(data["flux_windows_hours"]),
            flare_count_days=tuple(data["flare_count_days"]),
            max_staleness_minutes=int(data["max_staleness_minutes"]),
            min_coverage=float(data["min_coverage"]),
            hours_since_cap_days=int(data["hours_since_cap_days"]),
            # models stored before the preference existed chose by name alone, as an empty preference does
            satellite_preference=tuple(data.get("satellite_preference", ())),
        )

    def to_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @property
    def flux_lookback_hours(self) -> int:
        """Hourly bins before the issue time that any flux feature reads (coverage always looks at 24 h)."""
        return max(max(self.flux_windows_hours), 24)

    @property
    def flare_lookback(self) -> pd.Timedelta:
        return pd.Timedelta(days=max(max(self.flare_count_days), self.hours_since_cap_days))


def feature_names(params: FeatureParams) -> list[str]:
    """The model's input columns, in order."""
    return flux_feature_names(params) + flare_feature_names(params)


def flux_feature_names(params: FeatureParams) -> list[str]:
    names = ["xrsb_latest", "ratio_latest"]
    for w in params.flux_windows_hours:
        names += [f"xrsb_mean_{w}h", f"xrsb_max_{w}h", f"ratio_mean_{w}h"]
        if w > 1:
            names += [f"xrsb_min_{w}h", f"xrsb_std_{w}h", f"xrsb_slope_{w}h"]
    return names


def flare_feature_names(params: FeatureParams) -> list[str]:
    """The flare-history columns: what a degraded forecast reads when there is no flux."""
    names = []
    for d in params.flare_count_days:
        names += [f"flares_ge_{c.lower()}_{d}d" for c in TARGET_CLASSES] + [f"max_flare_log_flux_{d}d"]
    names += [f"log_hours_since_ge_{c.lower()}" for c in TARGET_CLASSES]
    return names


# ---- inputs -----------------------------------------------------------------------------------------------


def _utc_ns(values) -> np.ndarray:
    return pd.DatetimeIndex(pd.to_datetime(values, utc=True)).as_unit("ns").asi8


def _scaled_flux(observations: pd.DataFrame, band: str, true_flux: np.ndarray) -> np.ndarray:
    """One band's readings on the SWPC scale, NaN where missing or non-positive."""
    values = pd.to_numeric(observations[f"{band}_flux"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    values = np.where(true_flux, values * TRUE_TO_SWPC_SCALE[band], values)
    return np.where(np.isfinite(values) & (values > 0), values, np.nan)


def _satellite_rank(satellites: pd.Series, preference: tuple[str, ...]) -> np.ndarray:
    """Each reading's satellite as a tie-break rank: the preferred ones in their order, then the rest by name."""
    codes, names = pd.factorize(satellites.astype(str), sort=True)
    rank = np.array([preference.index(name) if name in preference else len(preference) + i
                     for i, name in enumerate(names)], dtype=np.int64)
    return rank[codes] if len(codes) else codes.astype(np.int64)


def hourly_bins(observations: pd.DataFrame, satellite_preference: tuple[str, ...] = ()) -> pd.DataFrame:
    """Hourly mean flux (SWPC scale) per hour start: columns xrsa, xrsb, xrsb_seconds.

    Each reading weighs its cadence (at most an hour). When several satellites or cadences cover an hour, the
    one covering most of it is that hour's primary (ties: the finer cadence, then `satellite_preference`, then
    the satellite name), so one hour is never a blend of two instruments. Plain numpy on purpose: the predictor
    computes this for every REST request and every stream forecast, and the pandas groupby it replaced cost
    ten times more at that size.
    """
    true_flux = (observations["scaling_era"] == "true_flux").to_numpy()
    xrsa, xrsb = (_scaled_flux(observations, band, true_flux) for band in ("xrsa", "xrsb"))
    usable = np.isfinite(xrsa) | np.isfinite(xrsb)
    time_ns = _utc_ns(observations["time_tag"])[usable]
    satellite_code = _satellite_rank(observations["satellite"], satellite_preference)[usable]
    cadence = observations["cadence_seconds"].to_numpy(dtype=np.int64)[usable]
    xrsa, xrsb = xrsa[usable], xrsb[usable]
    if not len(time_ns):
        return pd.DataFrame({"xrsa": [], "xrsb": [], "xrsb_seconds": []}, index=pd.DatetimeIndex([], tz="UTC"))
    hour = time_ns // HOUR_NS * HOUR_NS
    # one group per (hour, satellite, cadence), readings in time order within it
    order = np.lexsort((time_ns, cadence, satellite_code, hour))
    hour, satellite_code, cadence = hour[order], satellite_code[order], cadence[order]
    weight = np.minimum(cadence, 3600).astype(float)
    xrsa, xrsb = xrsa[order], xrsb[order]
    starts = np.flatnonzero(np.concatenate([[True], (np.diff(hour) != 0) | (np.diff(satellite_code) != 0)
                                            | (np.diff(cadence) != 0)]))
    sums = np.add.reduceat(np.column_stack([
        np.nan_to_num(xrsa) * weight, np.where(np.isfinite(xrsa), weight, 0.0),
        np.nan_to_num(xrsb) * weight, np.where(np.isfinite(xrsb), weight, 0.0),
    ]), starts, axis=0)
    group_hour, group_satellite, group_cadence = hour[starts], satellite_code[starts], cadence[starts]
    # per hour, the source covering most of it (ties: finer cadence, then preference, then satellite name)
    best = np.lexsort((group_satellite, group_cadence, -sums[:, 3], group_hour))
    first = best[np.concatenate([[True], np.diff(group_hour[best]) != 0])]
    xrsa_sum, xrsa_seconds, xrsb_sum, xrsb_seconds = sums[first].T
    with np.errstate(invalid="ignore", divide="ignore"):
        xrsa_mean = np.where(xrsa_seconds > 0, xrsa_sum / xrsa_seconds, np.nan)
        xrsb_mean = np.where(xrsb_seconds > 0, xrsb_sum / xrsb_seconds, np.nan)
    return pd.DataFrame({"xrsa": xrsa_mean, "xrsb": xrsb_mean, "xrsb_seconds": xrsb_seconds},
                        index=pd.DatetimeIndex(group_hour[first], tz="UTC"))


def flare_rank(peak_flux: np.ndarray, scaling_era: np.ndarray) -> np.ndarray:
    """Class rank (A=0 .. X=4) of each peak on the SWPC scale."""
    scaled = np.where(np.asarray(scaling_era) == "true_flux", peak_flux * TRUE_TO_SWPC_SCALE["xrsb"], peak_flux)
    floors = np.array([CLASS_FLOOR_FLUX[c] for c in ("B", "C", "M", "X")])
    return np.searchsorted(floors, scaled, side="right")


@dataclass(frozen=True)
class FlareTimeline:
    """Flares of class C and above, one per physical flare, sorted by peak: what features and targets read."""

    peak_ns: np.ndarray
    rank: np.ndarray
    log_flux: np.ndarray

    def at_least(self, target: str) -> np.ndarray:
        """Peak times (ns) of the flares of at least class `target`."""
        return self.peak_ns[self.rank >= CLASS_RANK[target]]


def flare_timeline(flares: pd.DataFrame, same_flare_minutes: float = 15.0) -> FlareTimeline:
    """Normalise a flare list. The same flare reported by two sources (a catalogue and the detector, or two
    catalogues) or seen by two satellites (the detector runs on each satellite's flux) with peaks within
    `same_flare_minutes` counts once: otherwise every count would double."""
    if flares.empty:
        empty = np.array([], dtype=np.int64)
        return FlareTimeline(empty, empty, np.array([], dtype=float))
    peak_ns = _utc_ns(flares["peak_time"])
    peak_flux = pd.to_numeric(flares["peak_flux"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    era = flares["scaling_era"].to_numpy() if "scaling_era" in flares else np.full(len(flares), "swpc_scaled")
    source = flares["source"].astype(str).to_numpy() if "source" in flares else np.full(len(flares), "")
    if "satellite" in flares:  # one report per source and satellite: two of them is the same flare twice
        source = source + "|" + flares["satellite"].fillna("").astype(str).to_numpy()
    rank = flare_rank(np.nan_to_num(peak_flux), era)
    scaled = np.where(era == "true_flux", peak_flux * TRUE_TO_SWPC_SCALE["xrsb"], peak_flux)
    keep = (rank >= CLASS_RANK["C"]) & np.isfinite(scaled)
    order = np.lexsort((source[keep], peak_ns[keep]))
    peaks, ranks, fluxes, sources = (peak_ns[keep][order], rank[keep][order], np.log10(scaled[keep][order]),
                                     source[keep][order])
    window = int(same_flare_minutes * 60e9)
    kept: list[int] = []
    for i in range(len(peaks)):
        duplicate = False
        for j in reversed(kept):
            if peaks[i] - peaks[j] > window:
                break
            if sources[j] != sources[i]:
                duplicate = True
                break
        if not duplicate:
            kept.append(i)
    index = np.array(kept, dtype=np.int64)
    return FlareTimeline(peaks[index], ranks[index], fluxes[index])


# ---- the feature function ---------------------------------------------------------------------------------


def _issue_times_ns(issue_times) -> np.ndarray:
    if isinstance(issue_times, (datetime, pd.Timestamp)):
        issue_times = [issue_times]
    return _utc_ns(list(issue_times) if not isinstance(issue_times, pd.DatetimeIndex) else issue_times)


def _window_matrix(grid_values: np.ndarray, end_index: np.ndarray, length: int) -> np.ndarray:
    """Row i: the `length` grid values ending at end_index[i] (inclusive), NaN before the grid starts."""
    padded = np.concatenate([np.full(length - 1, np.nan), grid_values])
    return sliding_window_view(padded, length)[end_index]


def _slope_per_hour(values: np.ndarray) -> np.ndarray:
    """Least-squares slope of each row against the hour index, ignoring NaN; 0 with fewer than 2 points."""
    valid = np.isfinite(values)
    x = np.broadcast_to(np.arange(values.shape[1], dtype=float), values.shape)
    y = np.where(valid, values, 0.0)
    n = valid.sum(axis=1)
    sx = np.where(valid, x, 0.0).sum(axis=1)
    sy = y.sum(axis=1)
    sxx = np.where(valid, x * x, 0.0).sum(axis=1)
    sxy = np.where(valid, x * y, 0.0).sum(axis=1)
    denominator = n * sxx - sx * sx
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (n * sxy - sx * sy) / denominator
    return np.where((n >= 2) & (denominator > 0), slope, 0.0)


def _flux_features(bins: pd.DataFrame, issue_ns: np.ndarray, params: FeatureParams) -> tuple[dict, dict]:
    lookback = params.flux_lookback_hours
    floor_ns = issue_ns - issue_ns % HOUR_NS
    grid_start = int(floor_ns.min()) - lookback * HOUR_NS
    n_grid = int((floor_ns.max() - grid_start) // HOUR_NS)
    grid = pd.DatetimeIndex(grid_start + np.arange(n_grid, dtype=np.int64) * HOUR_NS, tz="UTC")
    hourly = bins.reindex(grid)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_b = np.log10(hourly["xrsb"].to_numpy(dtype=float))
        ratio = np.log10(hourly["xrsa"].to_numpy(dtype=float)) - log_b
    # the last bin that ended by t starts one hour before floor(t)
    end_index = ((floor_ns - grid_start) // HOUR_NS - 1).astype(np.int64)
    b = _window_matrix(log_b, end_index, lookback)
    r = _window_matrix(ratio, end_index, lookback)

    def latest(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        valid = np.isfinite(matrix)
        found = valid.any(axis=1)
        column = lookback - 1 - np.argmax(valid[:, ::-1], axis=1)
        return found, matrix[np.arange(len(matrix)), column], column

    b_found, b_latest, b_column = latest(b)
    r_found, r_latest, _ = latest(r)
    hours_since_data = (lookback - 1 - b_column) + (issue_ns - floor_ns) / HOUR_NS
    coverage_24h = np.isfinite(b[:, -24:]).mean(axis=1)

    features: dict[str, np.ndarray] = {"xrsb_latest": b_latest, "ratio_latest": r_latest}
    # nanmean & co. warn on all-NaN rows; those rows are replaced by the fallback, so the warning is noise
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        for w in params.flux_windows_hours:
            bw, rw = b[:, -w:], r[:, -w:]
            empty = ~np.isfinite(bw).any(axis=1)
            r_empty = ~np.isfinite(rw).any(axis=1)
            features[f"xrsb_mean_{w}h"] = np.where(empty, b_latest, np.nanmean(bw, axis=1))
            features[f"xrsb_max_{w}h"] = np.where(empty, b_latest, np.nanmax(bw, axis=1))
            features[f"ratio_mean_{w}h"] = np.where(r_empty, r_latest, np.nanmean(rw, axis=1))
            if w > 1:
                features[f"xrsb_min_{w}h"] = np.where(empty, b_latest, np.nanmin(bw, axis=1))
                features[f"xrsb_std_{w}h"] = np.where(empty, 0.0, np.nanstd(bw, axis=1))
                features[f"xrsb_slope_{w}h"] = _slope_per_hour(bw)

    reason = np.full(len(issue_ns), None, dtype=object)
    stale = hours_since_data * 60 > params.max_staleness_minutes
    thin = coverage_24h < params.min_coverage
    reason[~r_found] = "no XRS-A flux in the lookback window"
    reason[thin] = f"flux covers less than {params.min_coverage:.0%} of the last 24 h"
    reason[stale] = f"latest flux is older than {params.max_staleness_minutes} minutes"
    reason[~b_found] = f"no XRS-B flux in the last {lookback} h"
    inputs_until = np.where(b_found, floor_ns - (lookback - 1 - b_column) * HOUR_NS, 0)
    meta = {"reason": reason, "coverage_24h": coverage_24h, "inputs_until_ns": inputs_until,
            "any_flux": b_found | r_found}
    return features, meta


def _flare_features(timeline: FlareTimeline, issue_ns: np.ndarray, params: FeatureParams) -> dict[str, np.ndarray]:
    features: dict[str, np.ndarray] = {}
    cap_hours = params.hours_since_cap_days * 24.0
    all_end = np.searchsorted(timeline.peak_ns, issue_ns, side="right")
    for d in params.flare_count_days:
        window_ns = d * 24 * HOUR_NS
        for target in TARGET_CLASSES:
            peaks = timeline.at_least(target)
            count = (np.searchsorted(peaks, issue_ns, side="right")
                     - np.searchsorted(peaks, issue_ns - window_ns, side="right"))
            features[f"flares_ge_{target.lower()}_{d}d"] = count.astype(float)
        start = np.searchsorted(timeline.peak_ns, issue_ns - window_ns, side="right")
        features[f"max_flare_log_flux_{d}d"] = np.array(
            [timeline.log_flux[lo:hi].max() if hi > lo else NO_FLARE_LOG_FLUX for lo, hi in zip(start, all_end)],
            dtype=float,
        )
    for target in TARGET_CLASSES:
        peaks = timeline.at_least(target)
        last = np.searchsorted(peaks, issue_ns, side="right") - 1
        hours = (np.where(last >= 0, (issue_ns - peaks[np.maximum(last, 0)]) / HOUR_NS, cap_hours) if len(peaks)
                 else np.full(len(issue_ns), cap_hours))
        features[f"log_hours_since_ge_{target.lower()}"] = np.log1p(np.minimum(hours, cap_hours))
    return features


def flare_history_features(flares: pd.DataFrame, issue_times, params: FeatureParams) -> pd.DataFrame:
    """The flare-history columns of `feature_table` alone, at every issue time, whatever the flux: what a
    forecast from the event history reads (the skill benchmark's event-history reference)."""
    issue_ns = _issue_times_ns(issue_times)
    values = _flare_features(flare_timeline(flares), issue_ns, params)
    return pd.DataFrame(values, index=pd.DatetimeIndex(issue_ns, tz="UTC", name="issued_at"))


def feature_table(observations: pd.DataFrame, flares: pd.DataFrame, issue_times, params: FeatureParams) -> pd.DataFrame:
    """Features at each issue time from the flux and flares known then; one row per issue time.

    Columns: `feature_names(params)` then `sufficient`, `reason`, `inputs_until` (end of the latest hourly bin
    used), `coverage_24h` and `flare_history`. Rows with `sufficient=False` hold zeros in the flux columns,
    never NaN; their flare columns hold the flare history.
    """
    issue_ns = _issue_times_ns(issue_times)
    index = pd.DatetimeIndex(issue_ns, tz="UTC", name="issued_at")
    names = feature_names(params)
    if len(issue_ns) == 0:
        return pd.DataFrame(columns=[*names, *META_COLUMNS], index=index)
    flux, meta = _flux_features(hourly_bins(observations, params.satellite_preference), issue_ns, params)
    timeline = flare_timeline(flares)
    flare = _flare_features(timeline, issue_ns, params)
    values = np.column_stack([flux[name] if name in flux else flare[name] for name in names])
    reason = meta["reason"]
    reason[~np.isfinite(values).all(axis=1) & (reason == None)] = "a flux feature could not be computed"  # noqa: E711
    sufficient = reason == None  # noqa: E711
    values[~sufficient, :len(flux_feature_names(params))] = 0.0  # the flux columns come first
    recent_flares = (np.searchsorted(timeline.peak_ns, issue_ns, side="right")
                     - np.searchsorted(timeline.peak_ns, issue_ns - params.flare_lookback.value, side="right"))
    table = pd.DataFrame(values, columns=names, index=index)
    table["sufficient"] = sufficient.astype(bool)
    table["reason"] = pd.Series(reason, index=index, dtype=object)  # None where sufficient, not NaN
    table["inputs_until"] = pd.DatetimeIndex(meta["inputs_until_ns"], tz="UTC").where(meta["inputs_until_ns"] > 0)
    table["coverage_24h"] = meta["coverage_24h"]
    table["flare_history"] = (meta["any_flux"] | (recent_flares > 0)).astype(bool)
    return table


@dataclass(frozen=True)
class FeatureVector:
    """The features at one instant, or why there are none."""

    issued_at: datetime
    values: "OrderedDict[str, float]"
    sufficient: bool
    reason: str | None
    inputs_until: datetime | None
    coverage_24h: float
    flare_history: bool

    @classmethod
    def from_table(cls, table: pd.DataFrame, position: int = 0) -> "FeatureVector":
        names = [c for c in table.columns if c not in META_COLUMNS]
        # column by column: a mixed-type row (`iloc`) is boxed value by value, slower than the features
        values = table[names].to_numpy(dtype=float)[position]
        reason, inputs_until = table["reason"].iat[position], table["inputs_until"].iat[position]
        return cls(
            issued_at=table.index[position].to_pydatetime(),
            values=OrderedDict(zip(names, values.tolist())),
            sufficient=bool(table["sufficient"].iat[position]),
            reason=None if pd.isna(reason) else str(reason),
            inputs_until=None if pd.isna(inputs_until) else inputs_until.to_pydatetime(),
            coverage_24h=float(table["coverage_24h"].iat[position]),
            flare_history=bool(table["flare_history"].iat[position]),
        )

    def as_frame(self) -> pd.DataFrame:
        """A one-row feature frame, as `feature_table` returns it."""
        frame = pd.DataFrame([self.values], index=pd.DatetimeIndex([self.issued_at], name="issued_at"))
        frame["sufficient"] = self.sufficient
        frame["reason"] = pd.Series([self.reason], index=frame.index, dtype=object)
        frame["inputs_until"] = pd.Timestamp(self.inputs_until) if self.inputs_until else pd.NaT
        frame["coverage_24h"] = self.coverage_24h
        frame["flare_history"] = self.flare_history
        return frame


# ---- streaming --------------------------------------------------------------------------------------------


class FeatureState:
    """Rolling feature state for the predictor: a bounded buffer of readings and flares.

    Readings are keyed by (satellite, cadence, time tag), so a redelivered or corrected reading replaces the
    earlier one instead of counting twice. The buffer keeps what `feature_table` reads (the flux lookback and
    the flare lookback before the newest reading), so `features_at(t)` equals the batch value at `t`.
    """

    def __init__(self, params: FeatureParams):
        self.params = params
        self._flux: dict[tuple[str, int, int], tuple[str, float | None, float | None]] = {}
        self._flares: dict[str, tuple[int, float, str, str, str | None]] = {}
        self._newest_ns = 0
        self._next_prune_ns = 0
        self._kept_from_ns: int | None = None
        self._watched_ns: int | None = None
        self.changed_since_watch = False

    def keep_from(self, time: datetime | None) -> None:
        """Keep what features at `time` read however far the newest reading moves on, until called with None:
        the predictor computes the forecasts a batch of readings makes due once it has taken in the batch."""
        self._kept_from_ns = None if time is None else int(pd.Timestamp(time).value)

    def watch_before(self, time: datetime) -> None:
        """From now on, note whether what features at `time` read changes: a reading tagged before it, or a flare
        (`changed_since_watch`)."""
        self._watched_ns = int(pd.Timestamp(time).value)
        self.changed_since_watch = False

    def knows_flare(self, message_id: str) -> bool:
        return message_id in self._flares

    def update_flux(self, observation: m.FluxObserved) -> None:
        time_ns = int(pd.Timestamp(observation.event_time).value)
        key = (observation.satellite, observation.cadence_seconds, time_ns)
        self._flux[key] = (observation.scaling_era, observation.xrsa_flux, observation.xrsb_flux)
        if self._watched_ns is not None and time_ns < self._watched_ns:
            self.changed_since_watch = True
        self._advance(time_ns)

    def update_flare(self, flare: m.FlareObserved) -> None:
        peak_ns = int(pd.Timestamp(flare.peak_time).value)
        self._flares[flare.message_id] = (peak_ns, flare.peak_flux, flare.scaling_era, flare.source, flare.satellite)
        self.changed_since_watch = True
        self._advance(peak_ns)

    def _advance(self, time_ns: int) -> None:
        if time_ns <= self._newest_ns:
            return
        self._newest_ns = time_ns
        # Pruning scans the whole buffer: once per event-time hour is enough, since the lookbacks keep two
        # hours of margin and features read only their own windows.
        if time_ns < self._next_prune_ns:
            return
        self._next_prune_ns = time_ns + HOUR_NS
        kept_ns = time_ns if self._kept_from_ns is None else min(time_ns, self._kept_from_ns)
        flux_cutoff = kept_ns - (self.params.flux_lookback_hours + 2) * HOUR_NS
        flare_cutoff = kept_ns - self.params.flare_lookback.value - 2 * HOUR_NS
        if len(self._flux) and min(key[2] for key in self._flux) < flux_cutoff:
            self._flux = {key: value for key, value in self._flux.items() if key[2] >= flux_cutoff}
        self._flares = {key: value for key, value in self._flares.items() if value[0] >= flare_cutoff}

    def observations(self) -> pd.DataFrame:
        if not self._flux:
            return pd.DataFrame(columns=list(OBSERVATION_COLUMNS))
        # column by column (one `zip` each side) rather than a tuple per row: this runs at every issue time
        satellite, cadence, time_ns = zip(*self._flux)
        era, xrsa, xrsb = zip(*self._flux.values())
        return observations_from_columns(time_ns, satellite, cadence, era, xrsa, xrsb, time_unit="ns")

    def flares(self) -> pd.DataFrame:
        frame = pd.DataFrame(list(self._flares.values()), columns=list(FLARE_COLUMNS))
        frame["peak_time"] = pd.to_datetime(frame["peak_time"].astype("int64"), utc=True)
        return frame

    def features_at(self, issued_at: datetime) -> FeatureVector:
        table = feature_table(self.observations(), self.flares(), [issued_at], self.params)
        return FeatureVector.from_table(table)


def hourly_issue_times(start: datetime, end: datetime, step_hours: int = 1) -> pd.DatetimeIndex:
    """Issue times on the hour from `start` (rounded up) to `end` inclusive."""
    first = pd.Timestamp(start).tz_convert("UTC") if pd.Timestamp(start).tzinfo else pd.Timestamp(start, tz="UTC")
    last = pd.Timestamp(end).tz_convert("UTC") if pd.Timestamp(end).tzinfo else pd.Timestamp(end, tz="UTC")
    return pd.date_range(first.ceil("h"), last, freq=timedelta(hours=step_hours), name="issued_at").as_unit("ns")


def observations_from_columns(time_tag: Sequence[int], satellite: Sequence[str], cadence_seconds: Sequence[int],
                              scaling_era: Sequence[str], xrsa_flux: Sequence[float | None],
                              xrsb_flux: Sequence[float | None], *, time_unit: str) -> pd.DataFrame:
    """Readings given column by column, the time as epoch integers in `time_unit`, as the frame features read (a
    missing flux value becomes NaN, as from rows)."""
    return pd.DataFrame({
        "time_tag": pd.to_datetime(np.asarray(time_tag, dtype=np.int64), unit=time_unit, utc=True),
        "satellite": satellite, "cadence_seconds": np.asarray(cadence_seconds, dtype=np.int64),
        "scaling_era": scaling_era,
        "xrsa_flux": np.asarray(xrsa_flux, dtype=np.float64), "xrsb_flux": np.asarray(xrsb_flux, dtype=np.float64),
    }, columns=list(OBSERVATION_COLUMNS))


def observations_from_rows(rows: Iterable[Mapping]) -> pd.DataFrame:
    """Readings (dicts or database records with the flux_observations columns) as the frame features read."""
    rows = list(rows)
    # column by column: a dict per row cost more than the features computed from it
    return pd.DataFrame({name: [row[name] for row in rows] for name in OBSERVATION_COLUMNS},
                        columns=list(OBSERVATION_COLUMNS))
