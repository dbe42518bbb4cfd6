#include "engine/decode-bound.h"

#include <algorithm>
#include <cstdio>
#include <string>

#include "engine/error.h"

namespace ember {

namespace {

std::string gb(double bytes) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%.6g", bytes);
    return buf;
}

// Seconds of `bytes` at `bw`; throws when bytes need a bandwidth there is none of.
double side_seconds(double bytes, double bw, const char* side) {
    if (!(bytes >= 0.0)) throw Error(std::string("decode bound: ") + side + " bytes " + gb(bytes) + ", expected >= 0");
    if (bytes == 0.0) return 0.0;
    if (!(bw > 0.0))
        throw Error(std::string("decode bound: ") + side + " reads " + gb(bytes) + " bytes a token but its bandwidth is " +
                    gb(bw) + " bytes/s, expected > 0");
    return bytes / bw;
}

void check(const DecodeBytes& b) {
    if (b.split_host.size() != b.split_gpu.size())
        throw Error("decode bound: split_host has " + std::to_string(b.split_host.size()) + " layers, split_gpu " +
                    std::to_string(b.split_gpu.size()) + ", expected the same");
    double host = 0.0, gpu = 0.0;
    for (size_t l = 0; l < b.split_host.size(); l++) {
        if (!(b.split_host[l] >= 0.0) || !(b.split_gpu[l] >= 0.0))
            throw Error("decode bound: layer " + std::to_string(l) + "'s split bytes " + gb(b.split_host[l]) + " / " +
                        gb(b.split_gpu[l]) + ", expected >= 0");
        host += b.split_host[l], gpu += b.split_gpu[l];
    }
    // The totals may round below the sum of their parts by a few ulps when both are means.
    const double slack = 1.0 + 1e-9;
    if (host > b.host * slack + 1.0 || gpu > b.gpu * slack + 1.0)
        throw Error("decode bound: the split FFNs read " + gb(host) + " host / " + gb(gpu) + " VRAM bytes, more than the " +
                    "token's " + gb(b.host) + " / " + gb(b.gpu));
}

}  // namespace

double decode_bound_parallel_ts(const DecodeBytes& b, double host_bw, double gpu_bw) {
    check(b);
    const double t = std::max(side_seconds(b.host, host_bw, "host"), side_seconds(b.gpu, gpu_bw, "VRAM"));
    return t > 0.0 ? 1.0 / t : 0.0;
}

double decode_bound_layer_order_ts(const DecodeBytes& b, double host_bw, double gpu_bw) {
    check(b);
    double t = side_seconds(b.host, host_bw, "host") + side_seconds(b.gpu, gpu_bw, "VRAM");
    for (size_t l = 0; l < b.split_host.size(); l++)
        t -= std::min(side_seconds(b.split_host[l], host_bw, "host"), side_seconds(b.split_gpu[l], gpu_bw, "VRAM"));
    return t > 0.0 ? 1.0 / t : 0.0;
}

}  // namespace ember
