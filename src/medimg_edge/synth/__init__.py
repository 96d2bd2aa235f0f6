"""Physics-based phantoms with exact ground truth (training and evaluation data).

No labelled clinical data can be shipped, so the reference models are trained and
evaluated on phantoms simulated from imaging physics::

    import medimg_edge as me
    s = me.synth.chest_xray(0)                 # Sample: image, label, mask, bbox, params
    u = me.synth.ultrasound(1, lesion="cyst", geometry="convex")
    data = me.synth.generate("ultrasound", 1000, seed=7, positive_fraction=0.5)
    me.synth.write(data, "phantoms/", fmt="png")   # class folders, masks, manifest.csv

Every sample is deterministic in its seed; NumPy and OpenCV only.  Not for clinical use.
"""

from __future__ import annotations

from ._common import LABELS, Sample
from ._dataset import generate, write
from ._ultrasound import ultrasound
from ._xray import chest_xray

__all__ = ["LABELS", "Sample", "chest_xray", "generate", "ultrasound", "write"]
