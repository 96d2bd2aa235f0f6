"""Drift of the results of a model against its reference distribution.

The reference (sidecar key ``drift``, fitted at training time on the validation frames by
:func:`fit_reference`) holds, per numeric signal (:mod:`._signals`), ``B`` equal-mass bins
of the reference values (edges at the reference quantiles ``1/B .. (B-1)/B``, tied edges
merged) with the reference counts, a few quantiles for the plots, and the counts of the
``outcome`` categories.

At run time :class:`DriftMonitor` keeps, per model, a rolling window of the last
``window`` results (the bin index of each signal, so the window's histogram is updated in
O(1) per result), and every ``check_every`` results compares each signal's window
histogram with the reference one:

* the population stability index ``PSI = sum (q - p) ln(q / p)`` (bin fractions
  ``p`` of the reference, ``q`` of the window, each count + 0.5) measures how much the
  distribution moved (0.1 slight, 0.25 major by the usual rule of thumb [1]_);
* the two-sample Kolmogorov-Smirnov statistic ``D`` on the binned CDFs (binning can only
  lower ``D``, so the test stays conservative) with its asymptotic p-value at the
  effective size ``n m / (n + m)`` (Stephens' correction [2]_); for ``outcome`` a
  chi-square test of homogeneity of the two count vectors.

A signal *breaches* at a check when its p-value is below ``alpha / (number of signals
tested)`` (Bonferroni: ``alpha`` is the family-wise false-alarm probability of one check)
**and** its PSI is at least ``psi_min`` (the shift is material, not only significant). A
signal goes into alarm after ``persistence`` consecutive breaching checks and leaves it
after ``persistence`` consecutive clean ones. The false-alarm rate and the detection delay
of the defaults are measured in ``bench/RESULTS.md`` (``scripts/drift_stream.py``).

References
----------
.. [1] B. Yurdakul, "Statistical properties of population stability index", PhD thesis,
   Western Michigan University, 2018.
.. [2] M. A. Stephens, "Use of the Kolmogorov-Smirnov, Cramer-von Mises and related
   statistics without extensive tables", J. R. Stat. Soc. B 32(1):115-122, 1970.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import functools
import hashlib
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import InvalidInputError
from ._signals import INPUT_SIGNALS, NUMERIC_SIGNALS, OUTCOME

__all__ = [
    "DRIFT_METHOD",
    "DriftConfig",
    "DriftMonitor",
    "Reference",
    "chi2_homogeneity",
    "chi2_sf",
    "fit_reference",
    "ks_binned",
    "ks_pvalue",
    "psi",
    "reference_of",
]

log = logging.getLogger("medimg_edge.monitor")

DRIFT_METHOD = "binned-psi-ks"
_VERSION = 1
#: Bins of a numeric signal's reference histogram.
DEFAULT_BINS = 20
_BAND = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
_OTHER = "(other)"


def _sig(x: float) -> float:
    """``x`` rounded to 7 significant digits (compact JSON)."""
    return float(f"{x:.7g}")


# ---- statistics -----------------------------------------------------------------------
def _counts(x: npt.ArrayLike | Sequence[int], name: str) -> list[float]:
    if isinstance(x, list):
        return [float(v) for v in x]
    arr = np.asarray(x, np.float64)
    if arr.ndim != 1:
        raise InvalidInputError(f"{name} must be a 1-D count vector, got shape {arr.shape}")
    out: list[float] = arr.tolist()
    return out


def psi(ref_counts: npt.ArrayLike, counts: npt.ArrayLike) -> float:
    """Population stability index of two count vectors over the same bins (each count
    + 0.5, so that an empty bin gives a finite value). Plain Python: the vectors have a
    few tens of bins, where NumPy's per-call overhead is most of the cost."""
    p = _counts(ref_counts, "ref_counts")
    q = _counts(counts, "counts")
    if len(p) != len(q):
        raise InvalidInputError(f"count vectors of different lengths: {len(p)}, {len(q)}")
    sp = sum(p) + 0.5 * len(p)
    sq = sum(q) + 0.5 * len(q)
    total = 0.0
    for a, b in zip(p, q, strict=True):
        pa, qb = (a + 0.5) / sp, (b + 0.5) / sq
        total += (qb - pa) * math.log(qb / pa)
    return total


def ks_pvalue(d: float, n: float, m: float) -> float:
    """Asymptotic p-value of the two-sample Kolmogorov-Smirnov statistic ``d`` of samples
    of sizes ``n`` and ``m``: ``Q_KS((sqrt(ne) + 0.12 + 0.11 / sqrt(ne)) d)`` with
    ``ne = n m / (n + m)`` and ``Q_KS(l) = 2 sum_k (-1)^(k-1) exp(-2 k^2 l^2)``."""
    if n <= 0 or m <= 0:
        return 1.0
    ne = n * m / (n + m)
    lam = (math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * float(d)
    if lam < 0.2:
        return 1.0
    total, sign = 0.0, 1.0
    for k in range(1, 101):
        term = sign * math.exp(-2.0 * k * k * lam * lam)
        total += term
        if abs(term) < 1e-12 * max(total, 1e-300):
            break
        sign = -sign
    return float(min(1.0, max(0.0, 2.0 * total)))


def ks_binned(ref_counts: npt.ArrayLike, counts: npt.ArrayLike) -> tuple[float, float]:
    """``(D, p)``: the Kolmogorov-Smirnov statistic of the binned CDFs of two count vectors
    and its p-value (:func:`ks_pvalue`)."""
    p = _counts(ref_counts, "ref_counts")
    q = _counts(counts, "counts")
    if len(p) != len(q):
        raise InvalidInputError(f"count vectors of different lengths: {len(p)}, {len(q)}")
    n, m = sum(p), sum(q)
    if n <= 0 or m <= 0:
        return 0.0, 1.0
    d = cp = cq = 0.0
    for a, b in zip(p, q, strict=True):
        cp += a
        cq += b
        d = max(d, abs(cp / n - cq / m))
    return d, ks_pvalue(d, n, m)


def _psi_ks(
    profile: tuple[list[float], list[float], float], counts: list[int]
) -> tuple[float, float, float]:
    """``(PSI, D, p)`` of a window's counts against a reference :attr:`Reference.profile`
    in one pass: :func:`psi` and :func:`ks_binned` of the monitor's hot path (a check of
    every signal every few results), without their conversions."""
    frac, cdf, n = profile
    m = float(sum(counts))
    if m <= 0 or n <= 0:
        return 0.0, 0.0, 1.0
    sq = m + 0.5 * len(counts)
    total = d = acc = 0.0
    log = math.log
    for pa, cp, c in zip(frac, cdf, counts, strict=True):
        qb = (c + 0.5) / sq
        total += (qb - pa) * log(qb / pa)
        acc += c
        diff = abs(cp - acc / m)
        if diff > d:
            d = diff
    return total, d, ks_pvalue(d, n, m)


def _gammainc_upper(a: float, x: float) -> float:
    """Regularised upper incomplete gamma ``Q(a, x)`` (series below ``a + 1``, Lentz's
    continued fraction above; Numerical Recipes 6.2)."""
    if x <= 0:
        return 1.0
    lg = math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(1000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-x + a * math.log(x) - lg))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return min(1.0, math.exp(-x + a * math.log(x) - lg) * h)


def chi2_sf(x: float, dof: int) -> float:
    """Survival function of the chi-square distribution with ``dof`` degrees of freedom."""
    if dof < 1:
        return 1.0
    return _gammainc_upper(dof / 2.0, max(0.0, float(x)) / 2.0)


def chi2_homogeneity(ref_counts: npt.ArrayLike, counts: npt.ArrayLike) -> tuple[float, float]:
    """``(statistic, p)`` of Pearson's chi-square test that two count vectors over the same
    categories come from one distribution (categories empty in both are dropped)."""
    table = np.stack([np.asarray(ref_counts, np.float64), np.asarray(counts, np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or np.any(table.sum(axis=1) <= 0):
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    stat = float(np.sum((table - expected) ** 2 / expected))
    return stat, chi2_sf(stat, table.shape[1] - 1)


# ---- the reference ----------------------------------------------------------------------
def fit_reference(
    values: Mapping[str, Sequence[float]],
    outcomes: Sequence[str | None],
    *,
    bins: int = DEFAULT_BINS,
    source: str = "",
) -> dict[str, Any]:
    """The sidecar's ``drift`` object from the signals of the reference frames.

    Parameters
    ----------
    values : mapping of str to sequence of float
        Per numeric signal (:data:`~medimg_edge.monitor.NUMERIC_SIGNALS`) the values of
        the reference frames that carry it; signals with fewer than ``2 * bins`` values
        are left out.
    outcomes : sequence of str or None
        The ``outcome`` of each reference frame.
    bins : int
        Equal-mass bins per signal (tied edges are merged, so a signal with few distinct
        values gets fewer).
    source : str
        What the reference frames were (recorded).
    """
    if not isinstance(bins, int) or not 2 <= bins <= 100:
        raise InvalidInputError(f"bins must be an integer in [2, 100], got {bins!r}")
    signals: dict[str, Any] = {}
    for name, vals in values.items():
        if name not in NUMERIC_SIGNALS:
            raise InvalidInputError(f"unknown drift signal {name!r}; known: {NUMERIC_SIGNALS}")
        v = np.asarray(vals, np.float64)
        v = v[np.isfinite(v)]
        if v.size < 2 * bins:
            continue
        raw = np.quantile(v, np.arange(1, bins) / bins)
        edges = np.unique(np.asarray([_sig(float(e)) for e in raw]))
        counts = np.bincount(np.searchsorted(edges, v, side="left"), minlength=edges.size + 1)
        signals[name] = {
            "edges": [float(e) for e in edges],
            "counts": [int(c) for c in counts],
            "band": {f"p{round(q * 100):02d}": _sig(float(np.quantile(v, q))) for q in _BAND},
        }
    cats = [c for c in outcomes if c]
    counter = collections.Counter(cats)
    labels = sorted(counter)
    return {
        "method": DRIFT_METHOD,
        "version": _VERSION,
        "n": int(max([len(cats)] + [sum(s["counts"]) for s in signals.values()])),
        "source": source,
        "signals": signals,
        "outcome": {"labels": labels, "counts": [int(counter[k]) for k in labels]},
    }


@dataclasses.dataclass(frozen=True)
class Reference:
    """A decoded ``drift`` object (see :func:`reference_of`)."""

    signals: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]]
    bands: dict[str, dict[str, float]]
    outcome_labels: tuple[str, ...]
    outcome_counts: npt.NDArray[np.int64]
    n: int
    fingerprint: str

    def bin_of(self, name: str, value: float) -> int:
        """Bin index of ``value`` in signal ``name``'s histogram (``edges[i-1] < value <=
        edges[i]``)."""
        return bisect.bisect_left(self._edges[name], value)

    @functools.cached_property
    def _edges(self) -> dict[str, list[float]]:
        return {name: edges.tolist() for name, (edges, _) in self.signals.items()}

    @functools.cached_property
    def profile(self) -> dict[str, tuple[list[float], list[float], float]]:
        """Per numeric signal what a check needs of the reference, computed once: the
        smoothed bin fractions ``(c + 0.5) / (n + 0.5 k)`` (:func:`psi`), the CDF at the
        bin edges and ``n`` (:func:`ks_binned`)."""
        out = {}
        for name, (_, counts) in self.signals.items():
            c = counts.tolist()
            n = float(sum(c))
            total = n + 0.5 * len(c)
            cdf, acc = [], 0.0
            for v in c:
                acc += v
                cdf.append(acc / n if n > 0 else 0.0)
            out[name] = ([(v + 0.5) / total for v in c], cdf, n)
        return out

    @functools.cached_property
    def ref_counts(self) -> dict[str, list[int]]:
        """The reference counts as lists (``outcome`` included, its last the ``(other)``)."""
        out = {name: counts.tolist() for name, (_, counts) in self.signals.items()}
        out[OUTCOME] = self.outcome_counts.tolist()
        return out

    def category_of(self, outcome: str) -> int:
        """Index of an outcome (unknown ones share the last index, ``(other)``)."""
        try:
            return self.outcome_labels.index(outcome)
        except ValueError:
            return len(self.outcome_labels)


def reference_of(meta: Mapping[str, Any]) -> Reference | None:
    """Decode the ``drift`` object of a sidecar (``meta``); None when it has none.

    Raises
    ------
    InvalidInputError
        The object is malformed (edges not increasing, counts of the wrong length, an
        unknown method or version).
    """
    obj = meta.get("drift")
    if obj is None:
        return None
    if not isinstance(obj, Mapping):
        raise InvalidInputError("the sidecar's 'drift' must be an object")
    if obj.get("method") != DRIFT_METHOD or obj.get("version") != _VERSION:
        raise InvalidInputError(
            f"drift reference method {obj.get('method')!r} version {obj.get('version')!r} is "
            f"not supported (this version reads {DRIFT_METHOD!r} version {_VERSION})"
        )
    signals: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]] = {}
    bands: dict[str, dict[str, float]] = {}
    for name, s in dict(obj.get("signals") or {}).items():
        if name not in NUMERIC_SIGNALS:
            continue  # a signal of a newer version: not monitored here
        edges = np.asarray(s.get("edges", []), np.float64)
        counts = np.asarray(s.get("counts", []), np.int64)
        if (
            edges.ndim != 1
            or counts.shape != (edges.size + 1,)
            or np.any(np.diff(edges) <= 0)
            or np.any(counts < 0)
            or not np.all(np.isfinite(edges))
        ):
            raise InvalidInputError(f"drift reference of {name!r}: bad edges or counts")
        signals[name] = (edges, counts)
        bands[name] = {str(k): float(v) for k, v in dict(s.get("band") or {}).items()}
    oc = dict(obj.get("outcome") or {})
    labels = tuple(str(x) for x in oc.get("labels", []))
    ocounts = np.asarray(oc.get("counts", []), np.int64)
    if ocounts.shape != (len(labels),):
        raise InvalidInputError("drift reference of 'outcome': labels and counts differ in length")
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
    return Reference(
        signals,
        bands,
        labels,
        np.append(ocounts, 0),  # the (other) category
        int(obj.get("n", 0)),
        digest,
    )


# ---- the monitor ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DriftConfig:
    """Settings of the drift monitor (defaults measured in ``bench/RESULTS.md``).

    Attributes
    ----------
    window : int
        Results in the rolling window of a model.
    check_every : int
        Results between two checks.
    alpha : float
        Family-wise false-alarm probability of one check (Bonferroni over the signals).
    psi_min : float
        Smallest PSI that counts as a material shift.
    persistence : int
        Consecutive breaching checks that raise an alarm (and clean ones that clear it).
    """

    window: int = 150
    check_every: int = 10
    alpha: float = 1e-3
    psi_min: float = 0.2
    persistence: int = 2

    def __post_init__(self) -> None:
        if not (isinstance(self.window, int) and 10 <= self.window <= 100_000):
            raise InvalidInputError(f"window must be an integer in [10, 100000], got {self.window}")
        if not (isinstance(self.check_every, int) and 1 <= self.check_every <= self.window):
            raise InvalidInputError("check_every must be an integer in [1, window]")
        if not 0.0 < self.alpha < 1.0:
            raise InvalidInputError(f"alpha must be in (0, 1), got {self.alpha}")
        if not self.psi_min >= 0.0:
            raise InvalidInputError(f"psi_min must be >= 0, got {self.psi_min}")
        if not (isinstance(self.persistence, int) and self.persistence >= 1):
            raise InvalidInputError("persistence must be an integer >= 1")


class _Track:
    """The window of one signal: bin indices (a deque) and their running counts."""

    __slots__ = ("bins", "breaches", "cleans", "counts", "d", "in_alarm", "p", "psi", "view")

    def __init__(self, n_bins: int, window: int) -> None:
        self.bins: collections.deque[int] = collections.deque(maxlen=window)
        self.counts = [0] * n_bins
        self.breaches = 0
        self.cleans = 0
        self.in_alarm = False
        self.psi = 0.0
        self.d = 0.0
        self.p = 1.0
        self.view: dict[str, Any] = {}
        self.update_view()

    def update_view(self) -> None:
        """The rounded statistics :meth:`DriftMonitor.status` reports (made once per check:
        the status is read far more often than a check runs)."""
        self.view = {
            "psi": round(self.psi, 4),
            "statistic": round(self.d, 4),
            "p": float(f"{self.p:.3g}"),
            "alarm": self.in_alarm,
        }

    def add(self, b: int) -> None:
        if len(self.bins) == self.bins.maxlen:
            self.counts[self.bins[0]] -= 1
        self.bins.append(b)
        self.counts[b] += 1


class _ModelState:
    """The windows of one model."""

    def __init__(self, key: str, ref: Reference, window: int) -> None:
        self.key = key
        self.ref = ref
        self.tracks: dict[str, _Track] = {
            name: _Track(edges.size + 1, window) for name, (edges, _) in ref.signals.items()
        }
        self.tracks[OUTCOME] = _Track(len(ref.outcome_counts), window)
        self.seen = 0
        self.since_check = 0
        self.checks = 0
        self.alarms_raised = 0


class DriftMonitor:
    """Rolling-window drift tests of the results of one or more models.

    Parameters
    ----------
    config : DriftConfig, optional
    logger : logging.Logger, optional
        Where alarms go (``drift_alarm`` / ``drift_cleared`` events at WARNING / INFO,
        with the model, the signal and the statistics; never an identifier).

    Examples
    --------
    >>> mon = DriftMonitor()
    >>> mon.add_model("us_lesion@2.0.2", reference_of(meta))        # doctest: +SKIP
    >>> events = mon.observe("us_lesion@2.0.2", *signals_of_result(doc))  # doctest: +SKIP
    """

    def __init__(self, config: DriftConfig | None = None, logger: Any = None) -> None:
        self.config = config or DriftConfig()
        self.log = logger or log
        self._models: dict[str, _ModelState] = {}
        self.unavailable: set[str] = set()

    def has_model(self, key: str) -> bool:
        """Whether ``key`` is monitored (it has a reference)."""
        return key in self._models

    def frames(self, key: str) -> int:
        """Results of model ``key`` seen so far (0 when not monitored)."""
        st = self._models.get(key)
        return 0 if st is None else st.seen

    def checks(self, key: str) -> int:
        """Checks run so far on model ``key``'s window (0 when not monitored)."""
        st = self._models.get(key)
        return 0 if st is None else st.checks

    def add_model(self, key: str, ref: Reference | None) -> None:
        """Monitor ``key`` against ``ref`` (None: drift monitoring is unavailable for it,
        reported as such)."""
        if ref is None:
            self.unavailable.add(key)
            self._models.pop(key, None)
        elif key not in self._models or self._models[key].ref.fingerprint != ref.fingerprint:
            self._models[key] = _ModelState(key, ref, self.config.window)
            self.unavailable.discard(key)

    def observe(
        self, key: str, values: Mapping[str, float], outcome: str | None
    ) -> list[dict[str, Any]]:
        """Add one result of model ``key``; returns the alarm events of the check it
        triggered (``{"event": "drift_alarm" | "drift_cleared", ...}``), usually none."""
        st = self._models.get(key)
        if st is None:
            return []
        ref = st.ref
        for name, v in values.items():
            tr = st.tracks.get(name)
            if tr is not None:
                tr.add(ref.bin_of(name, v))
        if outcome is not None:
            st.tracks[OUTCOME].add(ref.category_of(outcome))
        st.seen += 1
        st.since_check += 1
        if st.since_check < self.config.check_every:
            return []
        st.since_check = 0
        return self._check(st)

    def _check(self, st: _ModelState) -> list[dict[str, Any]]:
        cfg = self.config
        ready = [(n, tr) for n, tr in st.tracks.items() if len(tr.bins) >= cfg.window]
        if not ready:
            return []
        st.checks += 1
        level = cfg.alpha / len(ready)
        events: list[dict[str, Any]] = []
        for name, tr in ready:
            if name == OUTCOME:
                ref_counts = st.ref.ref_counts[name]
                tr.psi = psi(ref_counts, tr.counts)
                tr.d, tr.p = chi2_homogeneity(ref_counts, tr.counts)
            else:
                tr.psi, tr.d, tr.p = _psi_ks(st.ref.profile[name], tr.counts)
            breach = tr.p < level and tr.psi >= cfg.psi_min
            if breach:
                tr.breaches, tr.cleans = tr.breaches + 1, 0
            else:
                tr.breaches, tr.cleans = 0, tr.cleans + 1
            change = None
            if not tr.in_alarm and tr.breaches >= cfg.persistence:
                tr.in_alarm, change = True, "drift_alarm"
                st.alarms_raised += 1
            elif tr.in_alarm and tr.cleans >= cfg.persistence:
                tr.in_alarm, change = False, "drift_cleared"
            tr.update_view()
            if change is not None:
                ev = {
                    "event": change,
                    "model": st.key,
                    "signal": name,
                    "group": _group(name),
                    "psi": round(tr.psi, 4),
                    "statistic": round(tr.d, 4),
                    "p": float(f"{tr.p:.3g}"),
                    "frames": st.seen,
                    "window": cfg.window,
                }
                events.append(ev)
                msg = (
                    f"drift alarm: {name} of {st.key} moved from its reference "
                    f"(PSI {tr.psi:.2f}, p {tr.p:.2g})"
                    if change == "drift_alarm"
                    else f"drift cleared: {name} of {st.key}"
                )
                self.log.log(
                    logging.WARNING if change == "drift_alarm" else logging.INFO,
                    msg,
                    extra=ev,
                )
        return events

    def status(self) -> dict[str, Any]:
        """The monitor's state for ``/healthz``: per model the frames seen, the checks,
        the signals in alarm and each signal's latest PSI, statistic and p-value."""
        models: dict[str, Any] = {}
        for key, st in self._models.items():
            sigs = {name: {**tr.view, "n": len(tr.bins)} for name, tr in st.tracks.items()}
            alarms = sorted(n for n, tr in st.tracks.items() if tr.in_alarm)
            models[key] = {
                "available": True,
                "frames": st.seen,
                "checks": st.checks,
                "alarms_raised": st.alarms_raised,
                "status": "drift" if alarms else ("ok" if st.checks else "warming_up"),
                "alarms": alarms,
                "signals": sigs,
            }
        for key in sorted(self.unavailable):
            models[key] = {
                "available": False,
                "status": "unavailable",
                "reason": "the model's sidecar has no drift reference",
            }
        return {
            "window": self.config.window,
            "check_every": self.config.check_every,
            "alpha": self.config.alpha,
            "psi_min": self.config.psi_min,
            "persistence": self.config.persistence,
            "models": models,
        }

    # -- persistence ----------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The windows as a JSON-able document (:meth:`restore` reads it back)."""
        out: dict[str, Any] = {"format": "medimg-edge-drift-state", "version": 1, "models": {}}
        for key, st in self._models.items():
            out["models"][key] = {
                "fingerprint": st.ref.fingerprint,
                "window": self.config.window,
                "seen": st.seen,
                "since_check": st.since_check,
                "checks": st.checks,
                "alarms_raised": st.alarms_raised,
                "tracks": {
                    name: {
                        "bins": list(tr.bins),
                        "breaches": tr.breaches,
                        "cleans": tr.cleans,
                        "alarm": tr.in_alarm,
                        "psi": tr.psi,
                        "d": tr.d,
                        "p": tr.p,
                    }
                    for name, tr in st.tracks.items()
                },
            }
        return out

    def restore(self, doc: Mapping[str, Any], key: str) -> bool:
        """Restore model ``key``'s windows from a :meth:`state` document, when it holds
        them for the same reference and window size; returns whether it did."""
        st = self._models.get(key)
        saved = dict(doc.get("models") or {}).get(key) if doc.get("version") == 1 else None
        if st is None or not isinstance(saved, Mapping):
            return False
        if saved.get("fingerprint") != st.ref.fingerprint or saved.get("window") != (
            self.config.window
        ):
            return False
        try:
            for name, t in dict(saved.get("tracks") or {}).items():
                tr = st.tracks.get(name)
                if tr is None:
                    continue
                bins = [int(b) for b in t.get("bins", [])][-self.config.window :]
                if any(b < 0 or b >= len(tr.counts) for b in bins):
                    raise ValueError("bin out of range")
                for b in bins:
                    tr.add(b)
                tr.breaches, tr.cleans = int(t.get("breaches", 0)), int(t.get("cleans", 0))
                tr.in_alarm = bool(t.get("alarm", False))
                tr.psi, tr.d, tr.p = float(t["psi"]), float(t["d"]), float(t["p"])
                tr.update_view()
            st.seen = int(saved.get("seen", 0))
            st.since_check = int(saved.get("since_check", 0))
            st.checks = int(saved.get("checks", 0))
            st.alarms_raised = int(saved.get("alarms_raised", 0))
        except (TypeError, ValueError, KeyError):
            self._models[key] = _ModelState(key, st.ref, self.config.window)  # start afresh
            return False
        return True

    def models(self) -> Iterable[str]:
        """Keys of the monitored models."""
        return list(self._models)


def _group(name: str) -> str:
    return "input" if name in INPUT_SIGNALS else "output"
