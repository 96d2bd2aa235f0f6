"""Type stubs of the private extension medimg_edge._core (csrc/bindings/)."""

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]

compiler: str

def compiled_targets() -> list[str]: ...
def supported_targets() -> list[str]: ...
def active_target() -> str: ...
def set_target_cap(name: str) -> None: ...
def target_cap() -> str: ...
def srad(
    image: F32,
    iterations: int,
    time_step: float,
    q0: float,
    rho: float,
    target: str = "",
    out: F32 | None = None,
) -> F32: ...
def local_stats(
    image: F32,
    window: int,
    a: float,
    b: float,
    g: float,
    target: str = "",
    out: F32 | None = None,
) -> F32: ...
def frost(
    image: F32, window: int, damping: float, target: str = "", out: F32 | None = None
) -> F32: ...
def anscombe(
    image: F32, gain: float, sigma: float, target: str = "", out: F32 | None = None
) -> F32: ...
def inverse_anscombe(
    image: F32,
    table: F32,
    d0: float,
    step: float,
    sigma2: float,
    gain: float,
    target: str = "",
    out: F32 | None = None,
) -> F32: ...
def immerkaer_abs_sum(image: F32, target: str = "") -> float: ...
def speckle_cv(image: F32, window: int, target: str = "") -> float: ...
def srad_default(
    image: F32,
    iterations: int,
    time_step: float,
    rho: float,
    target: str = "",
    out: F32 | None = None,
) -> tuple[F32, float]: ...
def local_default(
    image: F32, window: int, kind: int, target: str = "", out: F32 | None = None
) -> tuple[F32, float]: ...
def poisson_gaussian(image: F32, block: int, target: str = "") -> tuple[float, float]: ...
def release_thread_scratch() -> None: ...
def thread_scratch_capacity() -> int: ...
def scan(image: F32, target: str = "") -> tuple[bool, float, float]: ...
def to_float32(image: npt.NDArray[np.generic], out: F32, target: str = "") -> bool: ...

# runtime: model input quantisation (register_runtime.cpp)
def quantize_affine(
    x: F32, a: F32, b: F32, out: npt.NDArray[np.generic], target: str = ""
) -> tuple[bool, float, float]: ...

# features: LBP (register_lbp.cpp)
def lbp(
    image: npt.NDArray[np.generic],
    P: int,
    rp: npt.NDArray[np.float64],
    cp: npt.NDArray[np.float64],
    method: int,
    max_abs: float,
    target: str = "",
    out: npt.NDArray[np.float64] | None = None,
) -> tuple[npt.NDArray[np.float64], bool]: ...
def lbp_histogram(
    image: npt.NDArray[np.generic],
    P: int,
    rp: npt.NDArray[np.float64],
    cp: npt.NDArray[np.float64],
    method: int,
    mask: npt.NDArray[np.uint8] | None,
    max_abs: float,
    target: str = "",
) -> tuple[npt.NDArray[np.uint32], bool]: ...

# features: first-order statistics, gradients, quality (register_stats.cpp)
def summary(
    values: F32 | npt.NDArray[np.uint8],
    mask: npt.NDArray[np.uint8] | None,
    bins: int,
    q: npt.NDArray[np.float64],
    mad: bool,
    rmad_lo: float,
    rmad_hi: float,
    below: float,
    above: float,
    target: str = "",
) -> tuple[dict[str, float], npt.NDArray[np.uint32], npt.NDArray[np.float64]]: ...
def gradient(
    image: F32, mask: npt.NDArray[np.uint8] | None, bins: int, target: str = ""
) -> tuple[F32, npt.NDArray[np.float64]]: ...
def gradient_summary(
    image: F32 | npt.NDArray[np.uint8],
    mask: npt.NDArray[np.uint8] | None,
    bins: int,
    q: npt.NDArray[np.float64],
    target: str = "",
) -> tuple[dict[str, float], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def sharpness(image: F32, target: str = "") -> dict[str, float]: ...
def extract_u8(
    image: npt.NDArray[np.uint8] | F32,
    levels: int,
    dr: npt.NDArray[np.int64],
    dc: npt.NDArray[np.int64],
    n_dist: int,
    rp: npt.NDArray[np.float64],
    cp: npt.NDArray[np.float64],
    firstorder_bins: int,
    gradient_bins: int,
    appearance: bool = False,
    target: str = "",
) -> npt.NDArray[np.float64]: ...
def quality_stats(
    image: F32, q: npt.NDArray[np.float64], below: float, above: float, target: str = ""
) -> tuple[dict[str, float], npt.NDArray[np.float64], dict[str, float], float]: ...
def subsample_quantiles(
    image: F32, step_y: int, step_x: int, q: npt.NDArray[np.float64], target: str = ""
) -> npt.NDArray[np.float64]: ...

# features: GLCM (register_glcm.cpp)
def glcm(
    image: npt.NDArray[np.generic],
    levels: int,
    dr: npt.NDArray[np.int64],
    dc: npt.NDArray[np.int64],
    symmetric: bool,
    normed: bool,
    target: str = "",
    out: npt.NDArray[np.uint32] | None = None,
) -> tuple[npt.NDArray[np.generic] | None, int]: ...
def glcm_props(
    P: npt.NDArray[np.generic], need: int = 7, target: str = ""
) -> tuple[bool, npt.NDArray[np.float64]]: ...
def glcm_need_bits() -> tuple[int, int, int]: ...
def glcm_prop_names() -> list[str]: ...

# quality gate (register_quality.cpp, csrc/kernels/quality.hpp)
def quality_measures(
    a: F32,
    fov: npt.NDArray[np.uint8],
    fov_given: bool,
    band_tol: float,
    stroke_tophat: float,
    stroke_level: float,
    inner_margin: int,
    stroke_margin: int,
    sat_lo: float,
    sat_hi: float,
    q: npt.NDArray[np.float64],
    taps_a: F32,
    taps_b: F32,
    edge_factor: float,
    min_threshold: float,
    top_fraction: float,
    min_edges: int,
    target: str = "",
) -> tuple[
    tuple[float, float, float, float, float, float, float, float, float],
    tuple[float, ...],
    tuple[float, float, float, float],
    tuple[float, float, float, float],
]: ...
def quality_bands(a: F32, tol: float, target: str = "") -> tuple[int, int, int, int]: ...
