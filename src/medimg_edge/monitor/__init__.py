"""Drift monitoring: are a model's results still like those of its reference frames?

::

    from medimg_edge import monitor
    mon = monitor.DriftMonitor()                       # window 150, a check every 10
    mon.add_model(key, monitor.reference_of(sidecar_meta))
    events = mon.observe(key, *monitor.signals_of_result(diagnosis.to_dict()))
    mon.status()                                       # what /healthz shows

The reference is the sidecar's ``drift`` object, fitted at training time on the
validation frames (:func:`fit_reference`, called by ``medimg-edge train``); a package
without it loads and its results are reported as "drift monitoring unavailable". The
signals, the tests (PSI, binned two-sample Kolmogorov-Smirnov, chi-square for the label
mix) and the false-alarm budget are described in :mod:`medimg_edge.monitor._drift`. The
daemon (``/healthz`` section ``drift``, ``medimg_edge_drift_*`` gauges, ``drift_alarm``
log events), ``medimg-edge batch`` (summary) and ``medimg-edge drift OUTBOX`` use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._drift import (
    DRIFT_METHOD,
    DriftConfig,
    DriftMonitor,
    Reference,
    chi2_homogeneity,
    chi2_sf,
    fit_reference,
    ks_binned,
    ks_pvalue,
    psi,
    reference_of,
)
from ._packages import find_reference
from ._signals import (
    INPUT_SIGNALS,
    NUMERIC_SIGNALS,
    OUTCOME,
    OUTPUT_SIGNALS,
    QUALITY_SIGNALS,
    outcome_of,
    signals_of_result,
    signals_of_row,
)

__all__ = [
    "DRIFT_METHOD",
    "INPUT_SIGNALS",
    "NUMERIC_SIGNALS",
    "OUTCOME",
    "OUTPUT_SIGNALS",
    "QUALITY_SIGNALS",
    "DriftConfig",
    "DriftMonitor",
    "Reference",
    "chi2_homogeneity",
    "chi2_sf",
    "find_reference",
    "fit_reference",
    "ks_binned",
    "ks_pvalue",
    "model_key",
    "outcome_of",
    "psi",
    "reference_of",
    "signals_of_result",
    "signals_of_row",
]


def model_key(name: Any, version: Any) -> str | None:
    """``name@version``, the key the monitor keeps a model's window under (None when the
    result names no model)."""
    if not isinstance(name, str) or not name:
        return None
    return f"{name}@{version}" if isinstance(version, str) and version else name


def key_of_result(doc: Mapping[str, Any]) -> str | None:
    """:func:`model_key` of a result's ``model``."""
    m = doc.get("model")
    return model_key(m.get("name"), m.get("version")) if isinstance(m, Mapping) else None


def drift_summary(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the monitor needs of one result, small and JSON-ready: ``{"model": ...,
    "signals": {signal: value}, "outcome": ...}`` (None when the result names no model).

    The daemon's worker process computes it beside the result it writes and sends it in its
    reply, so the main process adds a result to its window without reading the result file
    back."""
    model = doc.get("model")
    if key_of_result(doc) is None or not isinstance(model, Mapping):
        return None
    signals, outcome = signals_of_result(doc)
    return {"model": dict(model), "signals": signals, "outcome": outcome}


__all__ += ["drift_summary", "key_of_result"]
