"""The Python/C++ boundary: every bad input or parameter is an ``InvalidInputError``.

``InvalidInputError`` (a ``ValueError``) with a message naming the culprit and, where it
can, saying how to fix it -- never another exception type, never a crash, never a
silently non-finite result.  Hypothesis explores the input space; parametrised cases pin
down the documented messages.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

import medimg_edge as me

D = me.denoise
ACCEPTED = [np.uint8, np.uint16, np.float32, np.float64]

# ---------------------------------------------------------------------------------------
# Functions under test: name -> (call, smallest accepted side, needs non-negative input).
# ---------------------------------------------------------------------------------------

IMAGE_FUNCS = {
    "srad": (lambda a: D.srad(a, iterations=3), 1, True),
    "srad_q0": (lambda a: D.srad(a, iterations=2, time_step=1.0, q0=0.3, rho=0.0), 1, True),
    # Default noise_cv is estimated from the image: intensities (non-negative) only; see
    # test_estimated_noise_cv_above_10_is_not_an_error for the sparse-image case.
    "lee": (lambda a: D.lee(a), 1, True),
    "lee_w15": (lambda a: D.lee(a, window=15, noise_cv=0.4), 1, False),
    "kuan": (lambda a: D.kuan(a, window=3), 1, True),
    "frost": (lambda a: D.frost(a), 1, False),
    "frost_w5": (lambda a: D.frost(a, window=5, damping=0.5), 1, False),
    "wiener": (lambda a: D.wiener(a, noise_sigma=2.0), 1, False),
    "ultrasound": (lambda a: D.ultrasound(a), 1, True),
    "ultrasound_lee": (lambda a: D.ultrasound(a, method="lee"), 1, True),
    "ultrasound_kuan": (lambda a: D.ultrasound(a, method="kuan"), 1, True),
    "ultrasound_frost": (lambda a: D.ultrasound(a, method="frost"), 1, True),
    "xray": (lambda a: D.xray(a), 24, False),
    "xray_known": (lambda a: D.xray(a, gain=1.5, sigma=2.0), 1, False),
    "anscombe": (lambda a: D.anscombe(a, gain=2.0, sigma=1.0), 1, False),
    "inverse_anscombe": (lambda a: D.inverse_anscombe(a, gain=2.0, sigma=1.0), 1, False),
    "estimate_noise": (D.estimate_noise, 3, False),
    "estimate_speckle": (D.estimate_speckle, 1, False),
    "estimate_poisson_gaussian": (lambda a: D.estimate_poisson_gaussian(a, block=4), 12, False),
}
VST_FUNCS = ("anscombe", "inverse_anscombe")  # accept 1-D to 3-D
ESTIMATORS = ("estimate_noise", "estimate_speckle", "estimate_poisson_gaussian")


def _check_result(name: str, out: object, shape: tuple[int, ...]) -> None:
    if name in ESTIMATORS:
        values = out if isinstance(out, tuple) else (out,)
        assert len(values) == (2 if name == "estimate_poisson_gaussian" else 1)
        for v in values:
            assert isinstance(v, float)
            assert math.isfinite(v) and v >= 0.0, out
    else:
        assert isinstance(out, np.ndarray)
        assert out.dtype == np.float32
        assert out.shape == shape
        bad = int(out.size - np.count_nonzero(np.isfinite(out)))
        assert bad == 0, f"{name}: {bad} of {out.size} output values are NaN or infinite"


def test_exception_hierarchy():
    assert issubclass(me.InvalidInputError, me.MedimgEdgeError)
    assert issubclass(me.InvalidInputError, ValueError)
    for cls in (me.ModelError, me.DelegateError):
        assert issubclass(cls, me.MedimgEdgeError)
        assert not issubclass(cls, me.InvalidInputError)
    assert issubclass(me.MedimgEdgeError, Exception)


# ---------------------------------------------------------------------------------------
# Any finite array of an accepted dtype works.
# ---------------------------------------------------------------------------------------


def _elements(dtype: type, nonneg: bool) -> st.SearchStrategy:
    if np.dtype(dtype).kind == "u":
        return st.integers(0, int(np.iinfo(dtype).max))
    width = 32 if dtype == np.float32 else 64
    # Realistic magnitudes (beyond 16-bit detectors); huge magnitudes: see below.
    return st.floats(0.0 if nonneg else -1e6, 1e6, width=width, allow_subnormal=True)


@pytest.mark.parametrize("name", list(IMAGE_FUNCS))
@given(data=st.data())
def test_any_finite_image_gives_finite_output(name, data):
    fn, min_side, nonneg = IMAGE_FUNCS[name]
    dtype = data.draw(st.sampled_from(ACCEPTED), label="dtype")
    max_dims = 3 if name in VST_FUNCS else 2
    min_dims = 1 if name in VST_FUNCS else 2
    shape = data.draw(
        array_shapes(
            min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max(min_side, 1) + 20
        ),
        label="shape",
    )
    img = data.draw(arrays(dtype, shape, elements=_elements(dtype, nonneg)), label="image")
    before = img.copy()
    _check_result(name, fn(img), shape)
    np.testing.assert_array_equal(img, before)


def test_python_lists_and_numpy_scalar_parameters_are_accepted():
    out = D.lee([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], window=np.int64(3), noise_cv=np.float32(0.2))
    assert out.shape == (2, 3) and out.dtype == np.float32
    out = D.srad(np.ones((4, 4)), iterations=np.int32(2), time_step=np.float64(0.25))
    np.testing.assert_allclose(out, 1.0)
    assert D.anscombe([0.0, 1.0, 2.0], gain=np.float32(1.0)).shape == (3,)


# ---------------------------------------------------------------------------------------
# Bad images.
# ---------------------------------------------------------------------------------------


def _ragged() -> list:
    return [[1.0, 2.0], [3.0]]


# (id, factory, words the message must contain)
def _with(value: float, dtype: type) -> np.ndarray:
    img = np.ones((30, 30), dtype)
    img[17, 3] = value
    return img


# Images are 30x30 (the largest minimum size) unless the case is about the shape.
BAD_IMAGES = [
    ("nan_f32", lambda: _with(np.nan, np.float32), ["NaN", "nan_to_num"]),
    ("inf_f64", lambda: _with(np.inf, np.float64), ["infinite"]),
    ("neginf_f32", lambda: np.full((30, 30), -np.inf, np.float32), ["infinite"]),
    ("f64_beyond_f32", lambda: _with(1e300, np.float64), ["float32"]),
    ("empty_rows", lambda: np.zeros((0, 5), np.float32), ["empty"]),
    ("empty_cols", lambda: np.zeros((5, 0), np.uint8), ["empty"]),
    ("empty_both", lambda: np.zeros((0, 0)), ["empty"]),
    ("bool", lambda: np.ones((4, 4), bool), ["bool", "uint8"]),
    ("int32", lambda: np.ones((4, 4), np.int32), ["int32", "astype"]),
    ("int64_list", lambda: [[1, 2], [3, 4]], ["int64"]),
    ("int16_ct", lambda: np.ones((4, 4), np.int16), ["int16"]),
    ("uint32", lambda: np.ones((4, 4), np.uint32), ["uint32"]),
    ("float16", lambda: np.ones((4, 4), np.float16), ["float16"]),
    ("complex64", lambda: np.ones((4, 4), np.complex64), ["complex64", "abs"]),
    ("complex128", lambda: np.ones((4, 4), complex), ["complex128"]),
    ("object", lambda: np.ones((4, 4), object), ["object"]),
    ("datetime", lambda: np.ones((4, 4), "datetime64[s]"), ["datetime64"]),
    ("structured", lambda: np.zeros((4, 4), [("a", "f4")]), ["dtype"]),
    ("str_array", lambda: np.array([["a", "b"], ["c", "d"]]), ["dtype"]),
    ("str", lambda: "image.png", ["str", "NumPy array"]),
    ("bytes", lambda: b"\x00\x01", ["bytes"]),
    ("none", lambda: None, ["NoneType"]),
    ("dict", lambda: {"pixels": [1, 2]}, ["dict"]),
    ("ragged", _ragged, ["could not be converted"]),
    ("object_obj", lambda: object(), ["dtype object"]),
    ("too_long", lambda: np.broadcast_to(np.float32(1), (30, 1 << 17)), ["crop"]),
    ("too_many", lambda: np.broadcast_to(np.uint8(1), (1 << 15, 1 << 14)), ["crop"]),
]
WRONG_NDIM_2D = [
    ("0d", lambda: np.float32(3.0), ["2-D", "0-D"]),
    ("0d_python", lambda: 5.0, ["2-D"]),
    ("1d", lambda: np.ones(8, np.float32), ["2-D", "1-D"]),
    ("3d_rgb", lambda: np.ones((6, 6, 3), np.uint8), ["2-D", "cvtColor"]),
    ("3d", lambda: np.ones((2, 6, 6), np.float64), ["2-D", "3-D"]),
    ("4d", lambda: np.ones((1, 2, 6, 6), np.float32), ["2-D", "4-D"]),
]
WRONG_NDIM_VST = [
    ("0d", lambda: np.float64(3.0), ["0-D"]),
    ("4d", lambda: np.ones((1, 2, 6, 6), np.float32), ["4-D"]),
]


def _bad_image_cases():
    for name in IMAGE_FUNCS:
        extra = WRONG_NDIM_VST if name in VST_FUNCS else WRONG_NDIM_2D
        for case_id, factory, words in BAD_IMAGES + extra:
            yield pytest.param(name, factory, words, id=f"{name}-{case_id}")


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize(("name", "factory", "words"), list(_bad_image_cases()))
def test_bad_image_raises_invalid_input_error(name, factory, words):
    fn = IMAGE_FUNCS[name][0]
    with pytest.raises(me.InvalidInputError) as excinfo:
        fn(factory())
    message = str(excinfo.value)
    assert "image" in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("estimate_noise", (2, 9)),
        ("estimate_noise", (9, 2)),
        ("xray", (23, 40)),
        ("estimate_poisson_gaussian", (11, 30)),
    ],
)
def test_too_small_image_raises(name, shape):
    with pytest.raises(me.InvalidInputError, match="at least"):
        IMAGE_FUNCS[name][0](np.ones(shape, np.float32))


@pytest.mark.parametrize("name", ["srad", "srad_q0", "ultrasound"])
def test_srad_negative_input_raises(name):
    img = np.full((8, 8), 10.0, np.float32)
    img[3, 4] = -0.5
    with pytest.raises(me.InvalidInputError, match="non-negative"):
        IMAGE_FUNCS[name][0](img)


_BAD_DTYPES = [
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint32,
    np.uint64,
    np.float16,
    np.complex64,
    np.complex128,
    np.bool_,
]


@pytest.mark.parametrize("name", list(IMAGE_FUNCS))
@given(data=st.data())
def test_any_bad_image_raises_invalid_input_error(name, data):
    fn = IMAGE_FUNCS[name][0]
    min_dims, max_dims = (1, 3) if name in VST_FUNCS else (2, 2)
    kind = data.draw(
        st.sampled_from(["nonfinite", "dtype", "ndim", "empty", "ragged", "text"]), label="kind"
    )
    if kind == "nonfinite":
        dtype = data.draw(st.sampled_from([np.float32, np.float64]))
        img = data.draw(
            arrays(
                dtype,
                array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=24, max_side=30),
                elements=st.floats(0.0, 100.0, width=32),
            )
        )
        index = data.draw(st.tuples(*(st.integers(0, n - 1) for n in img.shape)))
        img[index] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    elif kind == "dtype":
        img = data.draw(
            arrays(
                st.sampled_from(_BAD_DTYPES),
                array_shapes(min_dims=2, max_dims=2, min_side=24, max_side=30),
            )
        )
    elif kind == "ndim":
        dims = data.draw(st.sampled_from([0, 4, 5] if name in VST_FUNCS else [0, 1, 3, 4]))
        img = data.draw(
            arrays(
                np.float32,
                array_shapes(min_dims=dims, max_dims=dims, min_side=1, max_side=4),
                elements=st.floats(0.0, 10.0, width=32),
            )
        )
    elif kind == "empty":
        shape = data.draw(
            array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=5).filter(
                lambda s: 0 in s
            )
        )
        img = np.zeros(shape, data.draw(st.sampled_from(ACCEPTED)))
    elif kind == "ragged":
        img = data.draw(
            st.lists(st.lists(st.floats(0, 10), min_size=1, max_size=4), min_size=2, max_size=4)
        )
        assume(len({len(row) for row in img}) > 1)
    else:
        img = data.draw(st.one_of(st.text(max_size=8), st.binary(max_size=8), st.none()))
    with pytest.raises(me.InvalidInputError, match="image"):
        fn(img)


# ---------------------------------------------------------------------------------------
# Bad parameters.
# ---------------------------------------------------------------------------------------

IMG = np.linspace(1.0, 100.0, 30 * 32, dtype=np.float32).reshape(30, 32)

_not_real = st.one_of(st.booleans(), st.text(max_size=3), st.just([1.0]), st.just(1j))
_nonfinite = st.sampled_from([math.nan, math.inf, -math.inf])


def _reals(lo=None, hi=None, lo_excl=False, hi_excl=False):
    return st.floats(
        lo, hi, exclude_min=lo_excl, exclude_max=hi_excl, allow_nan=False, allow_infinity=False
    )


bad_window = st.one_of(
    st.integers(max_value=2),
    st.integers(min_value=32),
    st.integers(3, 31).filter(lambda w: w % 2 == 0),
    st.floats(),
    st.none(),
    _not_real,
)
bad_count = st.one_of(st.floats(), st.none(), _not_real)  # not an integer at all

# (function, parameter, strategy of bad values, other keyword arguments)
BAD_PARAMS = {
    "srad.iterations": (D.srad, "iterations", st.one_of(st.integers(max_value=-1), bad_count)),
    "srad.time_step": (
        D.srad,
        "time_step",
        st.one_of(_reals(hi=0.0), _reals(lo=1.0, lo_excl=True), _nonfinite, st.none(), _not_real),
    ),
    "srad.q0": (D.srad, "q0", st.one_of(_reals(hi=0.0), _nonfinite, _not_real)),
    "srad.rho": (
        D.srad,
        "rho",
        st.one_of(_reals(hi=0.0, hi_excl=True), _nonfinite, st.none(), _not_real),
    ),
    "lee.window": (D.lee, "window", bad_window),
    "lee.noise_cv": (
        D.lee,
        "noise_cv",
        st.one_of(
            _reals(hi=0.0, hi_excl=True), _reals(lo=10.0, lo_excl=True), _nonfinite, _not_real
        ),
    ),
    "kuan.window": (D.kuan, "window", bad_window),
    "kuan.noise_cv": (
        D.kuan,
        "noise_cv",
        st.one_of(_reals(hi=0.0, hi_excl=True), _nonfinite, _not_real),
    ),
    "frost.window": (D.frost, "window", bad_window),
    "frost.damping": (
        D.frost,
        "damping",
        st.one_of(
            _reals(hi=0.0, hi_excl=True),
            _reals(lo=1e6, lo_excl=True),
            _nonfinite,
            st.none(),
            _not_real,
        ),
    ),
    "wiener.noise_sigma": (
        D.wiener,
        "noise_sigma",
        st.one_of(_reals(hi=0.0, hi_excl=True), _nonfinite, st.none(), _not_real),
    ),
    "wiener.window": (D.wiener, "window", bad_window, {"noise_sigma": 1.0}),
    "anscombe.gain": (
        D.anscombe,
        "gain",
        st.one_of(_reals(hi=0.0), _nonfinite, st.none(), _not_real),
    ),
    "anscombe.sigma": (
        D.anscombe,
        "sigma",
        st.one_of(_reals(hi=0.0, hi_excl=True), _nonfinite, st.none(), _not_real),
    ),
    "inverse_anscombe.gain": (
        D.inverse_anscombe,
        "gain",
        st.one_of(_reals(hi=0.0), _nonfinite, st.none(), _not_real),
    ),
    "inverse_anscombe.sigma": (
        D.inverse_anscombe,
        "sigma",
        st.one_of(_reals(hi=0.0, hi_excl=True), _nonfinite, st.none(), _not_real),
    ),
    "estimate_speckle.window": (D.estimate_speckle, "window", bad_window),
    "estimate_poisson_gaussian.block": (
        D.estimate_poisson_gaussian,
        "block",
        st.one_of(st.integers(max_value=3), st.integers(min_value=65), bad_count),
    ),
    "xray.gain": (
        D.xray,
        "gain",
        st.one_of(_reals(hi=0.0, hi_excl=True), _nonfinite, _not_real),
        {"sigma": 1.0},
    ),
    "xray.sigma": (
        D.xray,
        "sigma",
        st.one_of(_reals(hi=0.0, hi_excl=True), _nonfinite, _not_real),
        {"gain": 1.0},
    ),
    "xray.window": (D.xray, "window", bad_window),
    "ultrasound.method": (
        D.ultrasound,
        "method",
        st.one_of(
            st.text(max_size=6).filter(lambda m: m not in ("srad", "lee", "kuan", "frost")),
            st.none(),
            st.integers(),
            st.just(["srad"]),
        ),
    ),
}


@pytest.mark.parametrize("case", list(BAD_PARAMS))
@given(data=st.data())
def test_any_bad_parameter_raises_invalid_input_error(case, data):
    fn, param, strategy, *rest = BAD_PARAMS[case]
    kwargs = dict(rest[0]) if rest else {}
    kwargs[param] = data.draw(strategy, label=param)
    with pytest.raises(me.InvalidInputError) as excinfo:
        fn(IMG, **kwargs)
    assert param in str(excinfo.value)


# The cases named in the issue, with the exact hint where the message promises one.
EXPLICIT_BAD_PARAMS = [
    (D.lee, {"window": 4}, "window", "try 5"),
    (D.kuan, {"window": 1}, "window", "[3, 31]"),
    (D.frost, {"window": 33}, "window", "[3, 31]"),
    (D.lee, {"window": 7.0}, "window", "integer"),
    (D.wiener, {"window": True, "noise_sigma": 1.0}, "window", "integer"),
    (D.srad, {"iterations": -1}, "iterations", "[0,"),
    (D.srad, {"time_step": 0.0}, "time_step", "(0, 1]"),
    (D.srad, {"time_step": 1.01}, "time_step", "(0, 1]"),
    (D.srad, {"q0": math.nan}, "q0", "nan"),
    (D.srad, {"q0": 0.0}, "q0", "(0,"),
    (D.anscombe, {"sigma": -1.0}, "sigma", "-1"),
    (D.anscombe, {"gain": 0.0}, "gain", "(0,"),
    (D.inverse_anscombe, {"gain": 0}, "gain", "(0,"),
    (D.inverse_anscombe, {"sigma": -0.5}, "sigma", "-0.5"),
    (D.wiener, {"noise_sigma": -2.0}, "noise_sigma", "-2"),
    (D.xray, {"gain": -1.0, "sigma": 1.0}, "gain", "-1"),
    (D.xray, {"gain": 1.0, "sigma": -1.0}, "sigma", "-1"),
    (D.ultrasound, {"method": "median"}, "method", "srad, lee, kuan, frost"),
]


@pytest.mark.parametrize(
    ("fn", "kwargs", "param", "hint"),
    EXPLICIT_BAD_PARAMS,
    ids=[f"{fn.__name__}-{kw}" for fn, kw, *_ in EXPLICIT_BAD_PARAMS],
)
def test_bad_parameter_message(fn, kwargs, param, hint):
    with pytest.raises(me.InvalidInputError) as excinfo:
        fn(IMG, **kwargs)
    message = str(excinfo.value)
    assert param in message and hint in message, message


# ---------------------------------------------------------------------------------------
# Edge cases of valid input that must not turn into the wrong error or a non-finite result.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [D.lee, D.kuan], ids=["lee", "kuan"])
def test_estimated_noise_cv_above_10_is_not_an_error(fn):
    # A valid, non-negative, mostly black frame: the estimated speckle CV of a window
    # holding one bright pixel is sqrt(window^2 - 1) ~ 15 for window 15, above the
    # [0, 10] accepted for an explicit noise_cv (which the caller did not pass).
    img = np.zeros((20, 20), np.uint8)
    img[10, 10] = 100
    out = fn(img, window=15)
    assert out.shape == img.shape and np.isfinite(out).all()


HUGE_FUNCS = {k: v for k, v in IMAGE_FUNCS.items() if k not in ("lee_w15", "frost_w5")}
# Values up to MAX_ABS_VALUE (1e15) must give finite results; beyond it validation
# rejects them (float32 squares of such values overflow).
_HUGE_CASES = [
    pytest.param(name, magnitude, id=f"{name}-{magnitude:g}")
    for name in HUGE_FUNCS
    for magnitude in (1e14, 1e20, 3e38)
]


@pytest.mark.parametrize(("name", "magnitude"), _HUGE_CASES)
def test_huge_finite_float32_gives_finite_output_or_invalid_input_error(name, magnitude):
    # Finite float32 values of any magnitude: either a finite result or a clear
    # InvalidInputError -- never inf/NaN output, never another exception type.
    fn = HUGE_FUNCS[name][0]
    img = (np.random.default_rng(0).uniform(0.0, 1.0, (32, 32)) * magnitude).astype(np.float32)
    assert np.isfinite(img).all()
    try:
        with np.errstate(all="ignore"):
            out = fn(img)
    except me.InvalidInputError:
        return
    _check_result(name, out, img.shape)


@pytest.mark.parametrize("dtype", [">u2", ">f4", ">f8"])
@pytest.mark.parametrize("name", ["srad", "lee", "frost", "anscombe", "estimate_noise"])
def test_non_native_byte_order_is_accepted(name, dtype):
    # Big-endian uint16/float32/float64 *are* accepted dtypes (e.g. decoded from
    # big-endian DICOM or FITS); they must give the native-order result.
    fn = IMAGE_FUNCS[name][0]
    native = (np.arange(30 * 31).reshape(30, 31) % 97 + 1).astype(np.dtype(dtype).newbyteorder("="))
    swapped = native.astype(dtype)
    assert swapped.dtype.byteorder == ">"
    np.testing.assert_array_equal(fn(swapped), fn(native))


def test_ultrasound_method_array_raises_invalid_input_error():
    with pytest.raises(me.InvalidInputError, match="method"):
        D.ultrasound(IMG, method=np.array(["srad", "lee"]))


def test_float64_beyond_float32_is_invalid_input_even_with_warnings_as_errors():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(me.InvalidInputError, match="float32"):
            D.lee(_with(1e300, np.float64))


@given(
    data=st.data(),
    dtype=st.sampled_from([np.uint8, np.uint16]),
    shape=array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=300),
)
def test_integer_frames_convert_exactly_into_a_reused_buffer(data, dtype, shape):
    """``as_float_array(..., out=)`` converts uint8/uint16 in the ``widen`` kernel (GIL
    released): exactly what ``astype(float32)`` gives, for every length (vector tails)."""
    from medimg_edge._validation import as_float_array

    image = data.draw(arrays(dtype, shape))
    out = np.full(shape, np.nan, np.float32)
    got = as_float_array(image, out=out)
    assert got is out
    assert np.array_equal(out, image.astype(np.float32))
    # Strided and byte-swapped frames take NumPy's path, with the same result.
    for variant in (image[:, ::-1], image.astype(image.dtype.newbyteorder(">"))):
        out[...] = np.nan
        assert np.array_equal(as_float_array(variant, out=out), variant.astype(np.float32))


def test_to_float32_binding_refuses_what_it_does_not_handle():
    from medimg_edge import _core

    out = np.empty((4, 4), np.float32)
    assert _core.to_float32(np.ones((4, 4), np.uint8), out) is True
    assert _core.to_float32(np.ones((4, 4), np.float64), out) is False  # NumPy converts
    assert _core.to_float32(np.ones((4, 4), np.int16), out) is False
    assert _core.to_float32(np.ones((4, 8), np.uint8)[:, ::2], out) is False
    for bad in (np.empty((4, 4), np.float64), np.empty((3, 4), np.float32)):
        with pytest.raises(ValueError):
            _core.to_float32(np.ones((4, 4), np.uint8), bad)
    with pytest.raises(ValueError):
        _core.to_float32(np.ones((4, 4), np.uint8), np.empty((4, 4), np.float32)[:, ::-1])
