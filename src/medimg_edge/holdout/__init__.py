"""Hold-out phantom families: a second, independently designed simulator per modality.

These phantoms stand in for "a device the model has not seen".  They are **never used for
training, augmentation design or model selection** -- only for the final evaluation report
(issue 14, item 2).  They were written apart from :mod:`medimg_edge.synth`; only its
``Sample`` / ``LABELS`` interface is shared.

* :func:`chest_xray` -- a 3-D voxel torso (lungs with a vessel tree, heart, mediastinum,
  spine, ribs, clavicles, scapulae) projected by cone-beam ray sums through a polyenergetic,
  scattering, scintillator-detector chain with a vendor-like display LUT (``uint16``).
* :func:`ultrasound` -- a B-mode simulator on discrete Poisson point scatterers, an RF pulse,
  a depth-dependent beam, frequency-dependent attenuation, Hilbert envelope detection, a
  compander and scan conversion of convex / phased / linear probes (``uint8``).
* :func:`generate` -- a balanced, seeded list of either.

Examples
--------
>>> from medimg_edge import holdout
>>> s = holdout.chest_xray(0, size=256, nodule=True)
>>> s.image.dtype, s.label
(dtype('uint16'), 'nodule')
"""

from __future__ import annotations

import numbers

import numpy as np

from .._errors import InvalidInputError
from ..synth import LABELS, Sample
from ._bmode_points import LESIONS, ultrasound
from ._chest_voxel import chest_xray
from ._validate import check_fraction, check_seed, check_size

__all__ = ["LABELS", "LESIONS", "Sample", "chest_xray", "generate", "ultrasound"]

_DEFAULT_SIZE = {"xray": 512, "ultrasound": 256}
_MAX_N = 1_000_000


def generate(
    modality: str,
    n: int,
    *,
    seed: int,
    size: int | None = None,
    positive_fraction: float = 0.5,
) -> list[Sample]:
    """``n`` hold-out samples of one modality with a fixed share of positives.

    Parameters
    ----------
    modality : str
        ``"xray"`` or ``"ultrasound"``.
    n : int
        Number of samples (0 allowed).
    seed : int
        Master seed; sample ``i`` gets its own seed from ``SeedSequence([seed, ...])``, so
        the list is reproducible and a longer list extends a shorter one's seeds.
    size : int, optional
        Image size (default 512 for X-ray, 256 for ultrasound).
    positive_fraction : float
        Share of positives, rounded to a whole number of samples; which indices are
        positive is a seeded permutation.  Ultrasound positives cycle through cyst,
        hypoechoic and hyperechoic lesions in a seeded order.

    Returns
    -------
    list of Sample

    Raises
    ------
    InvalidInputError
        For an unknown modality or an invalid ``n``, ``seed``, ``size`` or fraction.
    """
    if modality not in _DEFAULT_SIZE:
        raise InvalidInputError(f"modality must be 'xray' or 'ultrasound', got {modality!r}")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 0 <= int(n) <= _MAX_N:
        raise InvalidInputError(f"n must be an integer in [0, {_MAX_N}], got {n!r}")
    n = int(n)
    seed = check_seed(seed)
    size = check_size(_DEFAULT_SIZE[modality] if size is None else size)
    frac = check_fraction(positive_fraction, "positive_fraction")
    ss = np.random.SeedSequence([seed, 0x401D, 1 if modality == "xray" else 2])
    seeds = ss.generate_state(n, dtype=np.uint32).tolist() if n else []
    rng = np.random.default_rng(ss.spawn(1)[0])
    n_pos = round(n * frac)
    positive = np.zeros(n, bool)
    positive[rng.permutation(n)[:n_pos]] = True
    kinds = np.array(["cyst", "hypoechoic", "hyperechoic"])[rng.permutation(max(n_pos, 1)) % 3]
    out: list[Sample] = []
    k = 0
    for i in range(n):
        if modality == "xray":
            out.append(chest_xray(int(seeds[i]), size=size, nodule=bool(positive[i])))
        else:
            lesion = str(kinds[k]) if positive[i] else "none"
            k += int(positive[i])
            out.append(ultrasound(int(seeds[i]), size=size, lesion=lesion))
    return out
