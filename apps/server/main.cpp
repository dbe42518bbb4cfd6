// ember-server: an OpenAI-compatible HTTP server with llama-server's flags. It listens at once (GET /health answers
// 503 until the model is loaded), then serves -np slots that decode together. Logs go to stderr; SIGINT or SIGTERM
// ends in-flight requests with an error and exits 0.
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <thread>

#include "apps/app-args.h"
#include "apps/app-model.h"
#include "apps/server/server.h"
#include "engine/chat-template.h"

using namespace ember;

namespace {

// Returns false when the program should exit 0 at once (--help, --version).
bool parse_args(int argc, char** argv, ServerParams& p) {
    std::string names;
    for (const std::string& n : chat_template_names()) names += (names.empty() ? "" : ", ") + n;
    const std::string template_help = "chat template to use instead of the model's: " + names;
    p.slots.session.n_threads = 0;
    ArgParser args("ember-server", "Serves a GGUF model over an OpenAI-compatible HTTP API (and llama.cpp's).");
    args.add_string({"-m", "--model"}, &p.model.path, "FNAME", "model path");
    args.add_string({"-a", "--alias"}, &p.alias, "NAME", "the model's id in the API (default: the file's name)");
    args.add_string({"--profile"}, &p.model.profile_path, "FNAME",
                    "activation profile from ember-profile: run the FFN sparse (default: dense)");
    args.add_int({"-ngl", "--gpu-layers", "--n-gpu-layers"}, &p.model.n_gpu_layers,
                 "layers to offload to the GPU, dense (-1 = automatic placement, 0 = CPU only)");
    app_add_placement_args(args, p.model);
    args.add_string({"--host"}, &p.host, "HOST", "address to listen on");
    args.add_int({"--port"}, &p.port, "port to listen on (0 = any free port, logged)");
    args.add_int(
        {"-c", "--ctx-size"}, &p.n_ctx,
        "KV cache tokens of all slots together, split evenly (0 = the model's context per slot, at most 4096)");
    args.add_int({"-np", "--parallel"}, &p.slots.n_slots, "slots: requests decoded at the same time");
    args.add_int({"--max-queue"}, &p.slots.n_queue,
                 "requests that may wait for a slot; more get 503");
    args.add_int({"-t", "--threads"}, &p.slots.session.n_threads, "threads per slot (0 = physical cores)");
    args.add_int({"-b", "--batch-size"}, &p.slots.n_prompt_chunk, "prompt tokens a slot evaluates per step");
    CacheTypeArgs cache_types;
    app_add_cache_type_args(args, cache_types);
    args.add_string({"--api-key"}, &p.api_key, "KEY",
                    "require 'Authorization: Bearer KEY' on every endpoint but /health and the chat page (GET /)");
    args.add_flag({"--metrics"}, &p.metrics, "serve Prometheus metrics at GET /metrics");
    args.add_string({"--chat-template"}, &p.chat_template, "NAME", template_help.c_str());
    args.add_int({"--threads-http"}, &p.n_threads_http, "HTTP worker threads (0 = slots + queue + 8)");
    args.add_int({"-to", "--timeout"}, &p.timeout_s, "HTTP read/write timeout in seconds");
    if (!app_parse_args(args, argc, argv)) return false;
    if (p.model.path.empty()) throw Error("no model given (use -m FILE; see --help)");
    if (p.port < 0 || p.port > 65535)
        throw Error("--port: invalid value '" + std::to_string(p.port) + "' (expected 0 to 65535)");
    if (p.n_ctx < 0) throw Error("-c: invalid value '" + std::to_string(p.n_ctx) + "' (expected >= 0)");
    if (p.slots.n_slots < 1)
        throw Error("-np: invalid value '" + std::to_string(p.slots.n_slots) + "' (expected >= 1)");
    if (p.slots.n_queue < 0)
        throw Error("--max-queue: invalid value '" + std::to_string(p.slots.n_queue) + "' (expected >= 0)");
    if (p.slots.n_prompt_chunk < 1)
        throw Error("-b: invalid value '" + std::to_string(p.slots.n_prompt_chunk) + "' (expected >= 1)");
    if (p.slots.session.n_threads < 0) p.slots.session.n_threads = 0;
    app_apply_cache_types(cache_types, p.slots.session);
    app_apply_cache_types(cache_types, p.model);
    if (p.n_threads_http < 0)
        throw Error("--threads-http: invalid value '" + std::to_string(p.n_threads_http) + "' (expected >= 0)");
    if (p.timeout_s < 1) throw Error("-to: invalid value '" + std::to_string(p.timeout_s) + "' (expected >= 1)");
    app_check_placement(args, p.model);
    if (!p.chat_template.empty()) {
        bool known = false;
        for (const std::string& n : chat_template_names()) known |= n == p.chat_template;
        if (!known)
            throw Error("--chat-template: invalid value '" + p.chat_template + "' (expected one of " + names + ")");
    }
    // The placement reserves KV cache and scratch for every slot.
    p.model.n_seq = p.slots.n_slots;
    p.model.n_ctx = p.n_ctx == 0 ? 0 : p.n_ctx / p.slots.n_slots;
    return true;
}

// --chat-template NAME, else the model's tokenizer.chat_template when recognised, else "plain" (logged).
std::string choose_template(const Model& model, const std::string& forced) {
    if (!forced.empty()) {
        std::fprintf(stderr, "server: chat template '%s' (--chat-template)\n", forced.c_str());
        return forced;
    }
    const std::string text = model.chat_template();
    const std::string name = chat_detect(text);
    if (!name.empty()) {
        std::fprintf(stderr, "server: chat template '%s', recognised from tokenizer.chat_template\n", name.c_str());
        return name;
    }
    std::fprintf(stderr, "server: %s; chat requests use the plain 'User: ... / Assistant:' format (choose one with "
                         "--chat-template NAME)\n",
                 text.empty() ? "the model has no tokenizer.chat_template" : "tokenizer.chat_template not recognised");
    return "plain";
}

volatile sig_atomic_t g_stop_signal = 0;  // the SIGINT or SIGTERM received, 0 while none

void on_stop_signal(int sig) { g_stop_signal = sig; }

std::string file_name(const std::string& path) {
    const size_t slash = path.find_last_of('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

int run(int argc, char** argv) {
    ServerState st;
    ServerParams& p = st.params;
    if (!parse_args(argc, argv, p)) return 0;
    std::fprintf(stderr, "%s\n", version_string().c_str());

    // SIGINT and SIGTERM only raise a flag (any thread may take them, BLAS workers included); a client gone
    // mid-write is an error return from send, not a signal.
#ifdef _WIN32
    signal(SIGINT, on_stop_signal);  // Windows has no sigaction and no SIGPIPE; Ctrl+C arrives as SIGINT
    signal(SIGTERM, on_stop_signal);
#else
    struct sigaction sa = {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
#endif

    httplib::Server http;
    const int n_http = p.n_threads_http > 0 ? p.n_threads_http : p.slots.n_slots + p.slots.n_queue + 8;
    http.new_task_queue = [n_http] { return new httplib::ThreadPool((size_t)n_http); };
    http.set_read_timeout(p.timeout_s);
    http.set_write_timeout(p.timeout_s);
    server_routes(http, st);
    const int port = p.port == 0 ? http.bind_to_any_port(p.host) : (http.bind_to_port(p.host, p.port) ? p.port : -1);
    if (port < 0)
        throw Error("cannot listen on " + p.host + ":" + std::to_string(p.port) + " (address in use or invalid)");
    std::atomic<bool> listener_done{false};
    std::thread listener([&http, &listener_done] {
        http.listen_after_bind();
        listener_done = true;
    });
    std::fprintf(stderr, "server: listening on http://%s:%d (%d HTTP threads)\n", p.host.c_str(), port, n_http);

    int rc = 0;
    try {
        double load_ms = 0;
        st.model = app_load_model(p.model, &load_ms);
        app_log_model_info(*st.model, "model");
        st.template_name = choose_template(*st.model, p.chat_template);
        SlotServerParams sp = p.slots;
        sp.session.n_ctx = p.n_ctx == 0 ? 0 : p.n_ctx / p.slots.n_slots;
        if (p.n_ctx > 0 && sp.session.n_ctx < 16)
            throw Error("-c " + std::to_string(p.n_ctx) + " split over -np " + std::to_string(p.slots.n_slots) +
                        " slots leaves " + std::to_string(sp.session.n_ctx) + " tokens each (expected at least 16)");
        st.slots = std::make_unique<SlotServer>(*st.model, sp);
        st.model_id = p.alias.empty() ? file_name(p.model.path) : p.alias;
        st.created = (int64_t)std::time(nullptr);
        st.ready = true;
        std::fprintf(stderr, "server: model '%s' loaded in %.1f ms; %d slots of %d tokens, %d threads each; ready\n",
                     st.model_id.c_str(), load_ms, st.slots->n_slots(), st.slots->n_ctx(), st.slots->n_threads());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        rc = 1;
    }

    while (rc == 0 && !g_stop_signal && !listener_done) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (g_stop_signal) std::fprintf(stderr, "server: signal %d, shutting down\n", (int)g_stop_signal);
    if (listener_done && rc == 0) {
        std::fprintf(stderr, "error: the HTTP listener stopped\n");
        rc = 1;
    }
    if (st.slots) st.slots->stop();  // in-flight requests end with an error, waking their connections
    // stop() before the listener thread has entered its loop would be lost (it would then listen for ever, e.g.
    // after a model that fails to load at once): wait until it runs or has ended.
    while (!http.is_running() && !listener_done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    http.stop();
    listener.join();
    return rc;
}

}  // namespace

int main(int argc, char** argv) {
    return app_run([&] { return run(argc, argv); });
}
