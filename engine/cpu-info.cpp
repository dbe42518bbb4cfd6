#include "engine/cpu-info.h"

#include "kernels-cpu/matmul.h"

#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <utility>

namespace ember {

int cpu_physical_cores() {
    std::set<std::pair<std::string, std::string>> cores;
    const unsigned n_hw = std::thread::hardware_concurrency();
    for (unsigned cpu = 0; cpu < n_hw; cpu++) {
        const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
        std::ifstream pkg(dir + "physical_package_id"), core(dir + "core_id");
        std::string p, c;
        if (!(pkg >> p) || !(core >> c)) continue;
        cores.insert({p, c});
    }
    if (!cores.empty()) return (int)cores.size();
    return n_hw > 0 ? (int)n_hw : 1;
}

const char* cpu_blas_coretype_advice() { return matmul_blas_coretype_advice(); }

}  // namespace ember
