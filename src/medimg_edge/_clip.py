"""The one clip rule: which frames of a multi-frame input are diagnosed and which of their
results is the clip's answer (used by :meth:`medimg_edge.Diagnoser.diagnose_clip`, the
DICOM reader's cine sampling and so by every client).

**Sampling.** A clip of ``n`` frames is diagnosed on :data:`CLIP_FRAMES` (3) frames evenly
spaced over it, always including the first and the last: index
``round(i * (n - 1) / (k - 1))`` for ``i = 0 .. k-1`` (:func:`sample_frame_indices`; all
frames when ``n <= k``).

**Aggregation.** The clip's answer is the result of one of those frames, never a blend:
the *decisive* frame (status not ``indeterminate``) with the highest ``positive_score``;
the earliest such frame on a tie; when every frame is indeterminate, the first sampled
frame (:data:`AGGREGATE_RULE`).  The answer therefore names the frame it rests on
(:attr:`ClipDiagnosis.frame_index`), and a lesion seen on any sampled frame is reported.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .diagnosis import Diagnosis

__all__ = ["AGGREGATE_RULE", "CLIP_FRAMES", "ClipDiagnosis", "aggregate", "sample_frame_indices"]

#: Frames diagnosed per clip.
CLIP_FRAMES = 3
#: The aggregation rule, as recorded in results.
AGGREGATE_RULE = (
    "the decisive frame with the highest positive score (all indeterminate: the first frame)"
)


def sample_frame_indices(n_frames: int, k: int = CLIP_FRAMES) -> tuple[int, ...]:
    """Indices of the frames diagnosed from a clip of ``n_frames`` (module docstring).

    All frames when ``n_frames <= k``; otherwise ``k`` frames evenly spaced over the
    clip, always including the first and the last (``k = 1``: the first; ``k = 3``:
    first, middle, last): ``round(i * (n_frames - 1) / (k - 1))`` for ``i = 0..k-1``.
    """
    if n_frames <= 0 or k <= 0:
        return ()
    if n_frames <= k:
        return tuple(range(n_frames))
    if k == 1:
        return (0,)
    return tuple(math.floor(i * (n_frames - 1) / (k - 1) + 0.5) for i in range(k))


def aggregate(results: Sequence[Diagnosis]) -> int:
    """Position in ``results`` of the clip's answer (:data:`AGGREGATE_RULE`)."""
    best = 0
    best_score = -math.inf
    for i, r in enumerate(results):
        if r.status == "indeterminate":
            continue
        score = r.positive_score if r.positive_score is not None else 0.0
        if score > best_score:
            best, best_score = i, score
    return best


@dataclasses.dataclass(frozen=True)
class ClipDiagnosis:
    """The result for a clip (or one frame of a file): the answer and what it rests on.

    Attributes
    ----------
    result : Diagnosis
        The answer: the result of frame :attr:`frame_index` (module docstring).
    frame_index : int
        0-based index, in the clip, of the frame the answer rests on.
    frame_indices : tuple of int
        The frames diagnosed (0-based, in the clip).
    frame_results : tuple of Diagnosis
        Their results, in the same order.
    n_frames : int
        Frames in the clip.
    """

    result: Diagnosis
    frame_index: int
    frame_indices: tuple[int, ...]
    frame_results: tuple[Diagnosis, ...]
    n_frames: int

    @property
    def status(self) -> str:
        """``result.status``."""
        return self.result.status

    @property
    def label(self) -> str | None:
        """``result.label``."""
        return self.result.label

    @property
    def confidence(self) -> float | None:
        """``result.confidence``."""
        return self.result.confidence

    @property
    def positive_score(self) -> float | None:
        """``result.positive_score``."""
        return self.result.positive_score

    @property
    def scores(self) -> dict[str, float]:
        """``result.scores``."""
        return self.result.scores

    @property
    def reasons(self) -> tuple[str, ...]:
        """``result.reasons``."""
        return self.result.reasons

    @property
    def position(self) -> int:
        """Position of :attr:`frame_index` in :attr:`frame_indices`."""
        return self.frame_indices.index(self.frame_index)

    def to_dict(self, *, include_heatmap: bool = False) -> dict[str, Any]:
        """``result.to_dict()`` plus ``frame_index``, ``clip`` (frames in the clip, the
        frames diagnosed, the rule) and, for more than one frame, ``aggregate`` and
        ``frame_results`` (each frame's result with its ``frame_index``)."""
        doc = self.result.to_dict(include_heatmap=include_heatmap)
        doc["frame_index"] = self.frame_index
        doc["clip"] = {
            "n_frames": self.n_frames,
            "frames_diagnosed": list(self.frame_indices),
            "rule": AGGREGATE_RULE,
        }
        if len(self.frame_results) > 1:
            doc["aggregate"] = AGGREGATE_RULE
            doc["frame_results"] = [
                {"frame_index": int(i), **r.to_dict()}
                for i, r in zip(self.frame_indices, self.frame_results, strict=True)
            ]
        return doc
