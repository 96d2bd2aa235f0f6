// Run-time selection of the SIMD target.
#pragma once

#include <string>
#include <vector>

#include "kernels.hpp"

namespace medimg {

// Targets compiled into this build, weakest first (always starts with "scalar").
const std::vector<const KernelTable*>& compiled_tables();
// Whether this CPU (and OS) can run the named compiled target.
bool cpu_supports(const std::string& name);
// Caps the target used by default; "" removes the cap.  Throws std::invalid_argument for a
// name that is not compiled in.  Thread-safe.
void set_target_cap(const std::string& name);
std::string target_cap();
// The best compiled target the CPU supports, at most the cap.  Lock-free: one atomic
// acquire load (the table is chosen once, and again only when the cap changes).
const KernelTable* active_table();
// A specific target by name ("" = active); throws std::invalid_argument if it is not
// compiled in or the CPU cannot run it.
const KernelTable* table_by_name(const std::string& name);
// table_by_name for a non-empty name.
const KernelTable* named_table(const std::string& name);

}  // namespace medimg
