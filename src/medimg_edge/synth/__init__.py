"""Physics-based phantoms with exact ground truth (training and evaluation data).

No labelled clinical data can be shipped, so the reference models are trained and
evaluated on phantoms simulated from imaging physics::

    import medimg_edge as me
    s = me.synth.chest_xray(0)                 # Sample: image, label, mask, bbox, params
    u = me.synth.ultrasound(1, lesion="cyst", geometry="convex")
    data = me.synth.generate("ultrasound", 1000, seed=7, positive_fraction=0.5)
    me.synth.write(data, "phantoms/", fmt="png")   # class folders, masks, manifest.csv

Every nuisance a model must not key on is drawn per frame over a wide range and recorded
in ``Sample.params``: for X-ray the display mapping (window, gamma, S-curve, used part of
the bit range), anatomy shape and edge sharpness, dose (1e3 ... 1.2e5 quanta / pixel) and
detector blur; nodules of radius 1.5-15 px at 256 and density 0.3-3.0 x soft tissue
(about a third ground glass).  For ultrasound gain, dynamic range, TGC, PSF, frequency,
depth and sector geometry; lesions of semi-axes 1.5-15 px at 128 with contrast 0.1-0.8 or
1.3-4 and soft or sharp, lobulated boundaries.  Both accept ``blur_px`` (an extra
resolution loss before the noise / envelope detection) for blur x dose x size sweeps, and
sizes 64 ... 4096.

Every sample is deterministic in its seed; NumPy and OpenCV only.  Not for clinical use.
"""

from __future__ import annotations

from ._common import LABELS, Sample
from ._dataset import generate, write
from ._ultrasound import ultrasound
from ._xray import chest_xray

__all__ = ["LABELS", "Sample", "chest_xray", "generate", "ultrasound", "write"]
