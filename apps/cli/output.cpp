// What ember-cli prints around generation: the text to stdout as it comes, notes and timings to stderr.
#include <cstdio>

#include "apps/cli/cli.h"

namespace ember {

bool cli_print_text(const std::string& text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return true;
}

void cli_print_finish(const GenerateResult& r, const Session& session) {
    if (r.finish != FinishReason::FINISH_CONTEXT_FULL) return;
    if (r.timings.n_prompt > session.n_ctx())  // the prompt itself did not fit: nothing was generated
        std::fprintf(stderr, "\ncontext full: %d tokens do not fit n_ctx = %d; stopping\n", r.timings.n_prompt,
                     session.n_ctx());
    else
        std::fprintf(stderr, "\ncontext full (n_ctx = %d tokens): stopping\n", session.n_ctx());
}

void cli_print_timings(const GenerateTimings& t, double load_ms) {
    auto rate = [](const char* what, double ms, int n, const char* unit) {
        std::fprintf(stderr, "ember: %16s = %10.2f ms / %5d %-6s (%8.2f ms per token, %8.2f tokens per second)\n",
                     what, ms, n, unit, n ? ms / n : 0.0, ms > 0 ? 1e3 * n / ms : 0.0);
    };
    std::fprintf(stderr, "\n");
    std::fprintf(stderr, "ember: %16s = %10.2f ms\n", "load time", load_ms);
    rate("sampling time", t.sample_ms, t.n_sample, "runs");
    rate("prompt eval time", t.prompt_ms, t.n_prompt_eval, "tokens");
    rate("eval time", t.eval_ms, t.n_eval, "runs");
    std::fprintf(stderr, "ember: %16s = %10.2f ms / %5d tokens\n", "total time", t.prompt_ms + t.generate_ms(),
                 t.n_prompt_eval + t.n_eval);
}

}  // namespace ember
