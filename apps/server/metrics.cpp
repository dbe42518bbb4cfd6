// GET /metrics: the slot server's counters in Prometheus' text exposition format, one HELP, TYPE and sample line
// per metric, named as llama-server's are where one exists (prompt_tokens_total, tokens_predicted_total,
// requests_processing, requests_deferred) under the "ember_" prefix.
#include <cstdio>

#include "apps/server/server.h"

namespace ember {

std::string server_metrics_text(const SlotMetrics& m) {
    std::string out;
    auto metric = [&out](const char* name, const char* type, const char* help, double value) {
        char line[64];
        std::snprintf(line, sizeof line, "%.17g", value);
        out += std::string("# HELP ember_") + name + " " + help + "\n# TYPE ember_" + name + " " + type + "\nember_" +
               name + " " + line + "\n";
    };
    metric("requests_total", "counter", "Requests that ended (any finish reason, errors included).",
           (double)m.n_requests);
    metric("requests_rejected_total", "counter", "Requests refused with 503: every slot busy and the queue full.",
           (double)m.n_rejected);
    metric("requests_cancelled_total", "counter", "Requests ended because the client went away.",
           (double)m.n_cancelled);
    metric("requests_failed_total", "counter", "Requests ended by an error.", (double)m.n_failed);
    metric("prompt_tokens_total", "counter", "Prompt tokens evaluated (not counting reused ones).",
           (double)m.n_prompt_tokens);
    metric("prompt_tokens_cached_total", "counter", "Prompt tokens reused from a slot's KV cache.",
           (double)m.n_prompt_cached);
    metric("prompt_seconds_total", "counter", "Time spent evaluating prompts, summed over requests.", m.prompt_seconds);
    metric("tokens_predicted_total", "counter", "Tokens generated.", (double)m.n_generated);
    metric("tokens_predicted_seconds_total", "counter", "Time spent generating tokens, summed over requests.",
           m.generate_seconds);
    metric("prompt_tokens_seconds", "gauge", "Prompt tokens evaluated per second of prompt time.",
           m.prompt_seconds > 0 ? m.n_prompt_tokens / m.prompt_seconds : 0.0);
    metric("predicted_tokens_seconds", "gauge", "Tokens generated per second of generation time, per request.",
           m.generate_seconds > 0 ? m.n_generated / m.generate_seconds : 0.0);
    metric("decode_steps_total", "counter", "Batched evaluation steps (one sessions_eval call over the busy slots).",
           (double)m.n_steps);
    metric("decode_step_slots_total", "counter", "Slots in those steps, summed (divided by steps: mean batch size).",
           (double)m.n_step_slots);
    metric("decode_step_tokens_total", "counter", "Tokens evaluated in those steps.", (double)m.n_step_tokens);
    metric("decode_step_seconds_total", "counter", "Time spent in those steps.", m.step_seconds);
    metric("slots", "gauge", "Slots (sequences decoded together, -np).", m.n_slots);
    metric("requests_processing", "gauge", "Slots generating now.", m.n_busy);
    metric("requests_deferred", "gauge", "Requests waiting for a slot now.", m.n_queued);
    return out;
}

}  // namespace ember
