#!/usr/bin/env bash
# Builds and runs the C++ kernel tests (csrc/tests/test_kernels.cpp): every compiled SIMD
# target against the scalar table and the scalar table against a float64 reference.
#
#   1. native      build/cpp-native    Release, every x86-64 target this CPU runs
#   2. sanitize    build/cpp-sanitize  RelWithDebInfo, AddressSanitizer + UBSan
#   3. aarch64     build/cpp-aarch64   cross-compiled (cmake/aarch64-linux-gnu.cmake),
#                                      scalar + NEON, run under qemu-aarch64
#
# Environment:
#   MEDIMG_CPP_RUNS="native sanitize aarch64"  the runs to do (default: all three)
#   MEDIMG_REQUIRE_AARCH64=1   fail when the cross compiler or qemu is missing (CI sets it);
#                              otherwise the aarch64 run is skipped with a message
#   JOBS=N                     parallel build jobs (default: nproc)
#
# Needs cmake and a C++17 compiler; the aarch64 run needs Debian's g++-aarch64-linux-gnu
# and qemu-user.  Exits non-zero if any build or test run fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RUNS="${MEDIMG_CPP_RUNS:-native sanitize aarch64}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
SANITIZE_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
AARCH64_SYSROOT=/usr/aarch64-linux-gnu

declare -a SUMMARY=()
STATUS=0

section() { printf '\n==== %s ====\n' "$*"; }

# build_and_run NAME BUILD_DIR [CMAKE ARG...] -- [COMMAND PREFIX...]
# Configures and builds test_kernels in BUILD_DIR, runs it (behind COMMAND PREFIX, e.g. an
# emulator, with the arguments in TEST_ARGS) and records its last line ("N passed, M failed").
build_and_run() {
  local name="$1" dir="$2"
  shift 2
  local -a cmake_args=()
  while [[ $# -gt 0 && $1 != -- ]]; do
    cmake_args+=("$1")
    shift
  done
  [[ $# -gt 0 ]] && shift
  local -a prefix=("$@")
  section "C++ kernel tests: $name ($dir)"
  mkdir -p "$dir"
  if ! cmake -S "$ROOT" -B "$dir" -DMEDIMG_BUILD_TESTS=ON "${cmake_args[@]}" \
    >"$dir/configure.log" 2>&1; then
    cat "$dir/configure.log"
    SUMMARY+=("$name: CMake configure FAILED")
    STATUS=1
    return 0
  fi
  if ! cmake --build "$dir" --target test_kernels --parallel "$JOBS"; then
    SUMMARY+=("$name: build FAILED")
    STATUS=1
    return 0
  fi
  local log="$dir/test_kernels.log" rc=0 last
  local -a cmd=("${prefix[@]}" "$dir/test_kernels" "${TEST_ARGS[@]}")
  echo "+ ${cmd[*]}"
  "${cmd[@]}" >"$log" 2>&1 || rc=$?
  # Everything but the per-check lines of a passing run (failures are always shown).
  grep -v '^ok ' "$log" || true
  last="$(tail -n 1 "$log")"
  if [[ $rc -ne 0 || ! $last =~ ^[0-9]+\ passed,\ 0\ failed$ ]]; then
    SUMMARY+=("$name: FAILED (exit $rc): $last")
    STATUS=1
  else
    SUMMARY+=("$name: $last")
  fi
}

for run in $RUNS; do
  case "$run" in
    native)
      TEST_ARGS=()
      build_and_run native build/cpp-native -DCMAKE_BUILD_TYPE=Release --
      ;;
    sanitize)
      TEST_ARGS=()
      export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1}"
      export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
      build_and_run "sanitize (ASan+UBSan)" build/cpp-sanitize \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        "-DCMAKE_CXX_FLAGS=$SANITIZE_FLAGS" "-DCMAKE_EXE_LINKER_FLAGS=$SANITIZE_FLAGS" --
      ;;
    aarch64)
      missing=()
      command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || missing+=(aarch64-linux-gnu-g++)
      command -v qemu-aarch64 >/dev/null 2>&1 || missing+=(qemu-aarch64)
      [[ -d $AARCH64_SYSROOT ]] || missing+=("$AARCH64_SYSROOT")
      if [[ ${#missing[@]} -gt 0 ]]; then
        section "C++ kernel tests: aarch64 (NEON under qemu)"
        echo "aarch64 run NOT done: missing ${missing[*]}."
        echo "Install with: apt-get install g++-aarch64-linux-gnu qemu-user"
        if [[ ${MEDIMG_REQUIRE_AARCH64:-0} == 1 ]]; then
          SUMMARY+=("aarch64: FAILED (missing ${missing[*]}; MEDIMG_REQUIRE_AARCH64=1)")
          STATUS=1
        else
          SUMMARY+=("aarch64: skipped (missing ${missing[*]})")
        fi
        continue
      fi
      TEST_ARGS=(--require neon)
      build_and_run "aarch64 (NEON under qemu)" build/cpp-aarch64 \
        -DCMAKE_BUILD_TYPE=Release "-DCMAKE_TOOLCHAIN_FILE=$ROOT/cmake/aarch64-linux-gnu.cmake" \
        -- qemu-aarch64 -L "$AARCH64_SYSROOT"
      ;;
    *)
      echo "unknown run '$run' in MEDIMG_CPP_RUNS (use native, sanitize, aarch64)" >&2
      exit 2
      ;;
  esac
done

section "C++ kernel tests: summary"
printf '%s\n' "${SUMMARY[@]}"
exit "$STATUS"
