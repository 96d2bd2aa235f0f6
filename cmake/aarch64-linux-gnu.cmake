# CMake toolchain file: cross-compile for 64-bit ARM Linux with Debian's cross compilers
# (apt-get install g++-aarch64-linux-gnu qemu-user).  CMAKE_SYSTEM_PROCESSOR=aarch64 makes
# cmake/SimdTargets.cmake build the scalar and NEON targets.  Used by scripts/test_cpp.sh:
#
#   cmake -S . -B build/cpp-aarch64 -DMEDIMG_BUILD_TESTS=ON \
#         -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
#   qemu-aarch64 -L /usr/aarch64-linux-gnu build/cpp-aarch64/test_kernels
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(MEDIMG_CROSS_PREFIX aarch64-linux-gnu-)
set(CMAKE_C_COMPILER ${MEDIMG_CROSS_PREFIX}gcc)
set(CMAKE_CXX_COMPILER ${MEDIMG_CROSS_PREFIX}g++)

# Debian installs the target's libc and libstdc++ under /usr/aarch64-linux-gnu.
set(MEDIMG_AARCH64_SYSROOT /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH ${MEDIMG_AARCH64_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# Lets CMake (and ctest) run the target's binaries on the build machine.
find_program(MEDIMG_QEMU_AARCH64 qemu-aarch64)
if(MEDIMG_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${MEDIMG_QEMU_AARCH64} -L ${MEDIMG_AARCH64_SYSROOT})
endif()
