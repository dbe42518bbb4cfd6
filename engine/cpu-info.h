// What the host CPU offers: physical cores (for the default thread count).
#pragma once

namespace ember {

// Distinct (package, core) pairs from /sys on Linux; hardware threads elsewhere; at least 1.
int cpu_physical_cores();

}  // namespace ember
