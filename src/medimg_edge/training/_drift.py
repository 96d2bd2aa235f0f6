"""Fitting the drift reference of a package (sidecar key ``drift``) at export.

The reference is the distribution of the drift signals (:mod:`medimg_edge.monitor`) of
the validation frames, diagnosed by the exported package itself through
:class:`medimg_edge.Diagnoser` (so every signal is exactly what the runtime reports for
such a frame: quality measures of the raw frame, both out-of-distribution distances, the
calibrated positive score, the outcome, the frame size). The raw frames are

* for generated data (``provenance["data"]["generator"] == "medimg_edge.synth"``):
  ``n_val`` frames of the validation generator (its seed base, its sides and lesion
  prior; :func:`generated_frames`), *without* the random device processing half of the
  validation frames get for the threshold fit: the reference describes the generator's
  own frames;
* otherwise the dataset's kept raw frames (``Dataset.frames``; frames larger than twice
  the model input were area-reduced to it when the set was built);
* with neither, no reference is fitted (the package loads; drift monitoring says it is
  unavailable).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy.typing as npt

from .._modality import check_modality
from ..monitor import fit_reference, signals_of_result
from ._data import FRAME_SIZES, Dataset

__all__ = ["fit_drift", "generated_frames", "reference_from_frames"]


def generated_frames(
    modality: str,
    n: int,
    *,
    seed: int,
    frame_size: int | None = None,
    lesion_prior: str = "conspicuous",
    positive_fraction: float = 0.5,
    **synth_kwargs: Any,
) -> Iterator[npt.NDArray[Any]]:
    """``n`` raw phantoms of the generator, each with its own side (drawn from
    :data:`~medimg_edge.training.FRAME_SIZES` when ``frame_size`` is None) and lesion class
    (balanced, in a shuffled order), frame ``i`` from ``sample_seed(seed, i)``.

    Sides are drawn per frame, not per chunk of frames as for training sets, so that the
    frame-size histogram of a reference is that of ``FRAME_SIZES`` and not that of a few
    chunks. ``synth_kwargs`` go to :func:`medimg_edge.synth.ultrasound` or
    :func:`~medimg_edge.synth.chest_xray` (e.g. ``dose=...``, ``geometry=...``).
    """
    import numpy as np

    from .. import synth
    from ..synth._dataset import sample_seed

    check_modality(modality)
    rng = np.random.default_rng([int(seed), 0xD21F7])
    if frame_size is None:
        table, probs = zip(*FRAME_SIZES[modality], strict=True)
        p = np.asarray(probs, np.float64)
        sides = rng.choice(np.asarray(table), size=n, p=p / p.sum())
    else:
        sides = np.full(n, int(frame_size))
    positives = list(synth.LABELS[modality][1:])
    n_pos = round(positive_fraction * n)
    labels = [positives[k % len(positives)] for k in range(n_pos)] + ["normal"] * (n - n_pos)
    labels = [labels[k] for k in rng.permutation(n)]
    for i in range(n):
        s = sample_seed(int(seed), i)
        side = int(sides[i])
        if modality == "xray":
            yield synth.chest_xray(
                s,
                size=side,
                nodule=labels[i] != "normal",
                lesion_prior=lesion_prior,
                **synth_kwargs,
            ).image
        else:
            lesion = "none" if labels[i] == "normal" else labels[i]
            yield synth.ultrasound(
                s, size=side, lesion=lesion, lesion_prior=lesion_prior, **synth_kwargs
            ).image


def reference_from_frames(
    sidecar: str | Path, frames: Iterable[Any], *, source: str = ""
) -> dict[str, Any]:
    """Diagnose ``frames`` with the package ``sidecar`` (CPU, one thread, the default
    quality gate) and fit the ``drift`` object on their signals
    (:func:`medimg_edge.monitor.fit_reference`)."""
    from ..diagnosis import Diagnoser

    diag = Diagnoser(Path(sidecar), delegate="cpu", num_threads=1)
    values: dict[str, list[float]] = {}
    outcomes: list[str | None] = []
    for frame in frames:
        sig, outcome = signals_of_result(diag.diagnose(frame).to_dict())
        for name, v in sig.items():
            values.setdefault(name, []).append(v)
        outcomes.append(outcome)
    return fit_reference(values, outcomes, source=source)


def fit_drift(
    sidecar: str | Path, val: Dataset, provenance: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The ``drift`` object of an exported package from its validation frames (see the
    module docstring for which raw frames), or None when no raw frames are available."""
    data = provenance.get("data")
    if isinstance(data, Mapping) and data.get("generator") == "medimg_edge.synth":
        fs = data.get("frame_size")
        frames: Iterable[Any] = generated_frames(
            str(data["modality"]),
            int(data["n_val"]),
            seed=int(data["val_seed"]),
            frame_size=fs if isinstance(fs, int) else None,
            lesion_prior=str(data.get("lesion_prior", "conspicuous")),
        )
        source = (
            f"{data['n_val']} frames of the validation generator (seed base "
            f"{data['val_seed']}, one side per frame), before device processing"
        )
    elif val.frames is not None:
        frames = val.frames
        source = f"validation split ({len(val)} frames, sides above twice the input reduced)"
    else:
        return None
    return reference_from_frames(sidecar, frames, source=source)
