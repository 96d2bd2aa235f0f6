# medimg_add_simd_targets(<objects-var> <defs-var>)
#
# Adds one OBJECT library per SIMD target the compiler can build for this architecture,
# each compiling csrc/kernels/target.cpp with -DMEDIMG_TARGET_<NAME> and that target's
# flags.  Returns the $<TARGET_OBJECTS:...> list and the MEDIMG_HAVE_<NAME> definitions
# that tell csrc/dispatch.cpp which tables exist.
#
# The scalar target disables auto-vectorisation so that it stays an honest reference.
# -ffp-contract=off everywhere: FMAs only where a kernel asks for them (simd::fmadd).
function(medimg_add_simd_targets objects_var defs_var)
  set(src ${PROJECT_SOURCE_DIR}/csrc/kernels/target.cpp)
  set(objects "")
  set(defs "")
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|i[3-6]86)$")
    set(targets scalar sse4 avx2 avx512)
    set(flags_scalar -fno-tree-vectorize -fno-tree-slp-vectorize)
    set(flags_sse4 -msse4.1 -msse4.2)
    set(flags_avx2 -mavx2 -mfma)
    set(flags_avx512 -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma)
  elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
    set(targets scalar neon)
    set(flags_scalar -fno-tree-vectorize -fno-tree-slp-vectorize)
    set(flags_neon "")
  else()
    set(targets scalar)
    set(flags_scalar -fno-tree-vectorize -fno-tree-slp-vectorize)
  endif()
  foreach(t IN LISTS targets)
    string(TOUPPER ${t} T)
    add_library(medimg_simd_${t} OBJECT ${src})
    target_compile_definitions(medimg_simd_${t} PRIVATE MEDIMG_TARGET_${T}=1)
    target_compile_options(medimg_simd_${t} PRIVATE -O3 -fno-math-errno -ffp-contract=off -Wno-psabi ${flags_${t}})
    set_target_properties(medimg_simd_${t} PROPERTIES POSITION_INDEPENDENT_CODE ON)
    list(APPEND objects $<TARGET_OBJECTS:medimg_simd_${t}>)
    if(NOT t STREQUAL "scalar")
      list(APPEND defs MEDIMG_HAVE_${T}=1)
    endif()
  endforeach()
  set(${objects_var} ${objects} PARENT_SCOPE)
  set(${defs_var} ${defs} PARENT_SCOPE)
endfunction()
