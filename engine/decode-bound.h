// The decode speed that the weight bytes each side reads allow (ember-bench's bounds). Two bounds from the same
// bytes:
//   - sides in parallel: 1 / max(host bytes / host bandwidth, VRAM bytes / VRAM bandwidth), as if the host and the
//     GPU always read at the same time, whatever each layer's parts wait for;
//   - layer order: the parts in the order the data lets them run. A layer's attention needs the residual its last
//     layer finished, its FFN needs the attention's; only the two halves of a split FFN (hot neurons on the GPU,
//     cold ones on the host) run at the same time. So the time is every part's time in turn, less the shorter
//     half of each split FFN: host / host_bw + VRAM / vram_bw - sum over split layers of min(cold / host_bw,
//     hot / vram_bw). Never above the parallel bound; equal to it when only one side reads.
#pragma once
#include <cstdint>
#include <vector>

namespace ember {

// Weight bytes of one decode token on each side; split_host[l] and split_gpu[l]: of those, layer l's split FFN
// halves (cold rows on the host, hot rows in VRAM; both 0 for a layer that does not split, and both vectors empty
// when none does). Per-token averages are fine: every quantity is a mean over the same tokens.
struct DecodeBytes {
    double host = 0.0;
    double gpu = 0.0;
    std::vector<double> split_host, split_gpu;
};

// Tokens per second of each bound; bandwidths in bytes per second. A side that reads no bytes needs no bandwidth;
// one that reads bytes needs bandwidth > 0. Throws ember::Error naming the field on negative bytes, a missing
// bandwidth, split vectors of different lengths or split bytes above their side's total. 0 when no side reads.
double decode_bound_parallel_ts(const DecodeBytes& b, double host_bw, double gpu_bw);
double decode_bound_layer_order_ts(const DecodeBytes& b, double host_bw, double gpu_bw);

}  // namespace ember
