// ember-server's parts: HTTP routes (routes.cpp), request parsing and response shapes of the OpenAI and llama.cpp
// APIs (api.cpp), Prometheus metrics (metrics.cpp) and the program (main.cpp). Generation itself is
// engine/server-slots.h: this app turns JSON into SlotRequests and SlotTask text into JSON and server-sent events.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/ember.h"
#include "engine/server-slots.h"

namespace httplib {
class Server;
}

namespace ember {

using json = nlohmann::json;

struct ServerParams {
    ModelParams model;            // -m, -ngl, --profile
    SlotServerParams slots;       // -np, --max-queue, -t, -b (n_ctx is set from -c)
    int n_ctx = 0;                // -c: KV cache tokens of all slots together, split evenly as llama-server does;
                                  // 0 = the model's training context (at most 4096) per slot
    std::string alias;            // -a: the model id in /v1/models; "" = the model file's name
    std::string host = "127.0.0.1";
    int port = 8080;              // 0: any free port (the log says which)
    std::string api_key;          // --api-key: required on every endpoint but /health and the page at /
    bool metrics = false;         // --metrics: serve GET /metrics
    std::string chat_template;    // --chat-template NAME; "" = recognise the model's
    int n_threads_http = 0;       // --threads-http; 0 = enough for every slot and queued request, plus spare
    int timeout_s = 600;          // -to: HTTP read/write timeout
};

// What the routes serve. Until `ready`, only /health answers (503); the rest is set before ready turns true and
// lives until the HTTP server has stopped.
struct ServerState {
    ServerParams params;
    std::atomic<bool> ready{false};
    std::unique_ptr<Model> model;
    std::unique_ptr<SlotServer> slots;
    std::string model_id;                   // the id clients name in "model"
    std::string template_name;              // the chat template in use (engine/chat-template.h)
    int64_t created = 0;                    // unix time the model was loaded
};

// A request the server refuses: an HTTP status and an OpenAI-style error body
// {"error": {"code": status, "message": ..., "type": ..., "param": ...}}.
struct HttpError : Error {
    HttpError(int status, const std::string& message, std::string type = "invalid_request_error",
              std::string param = "")
        : Error(message), status(status), type(std::move(type)), param(std::move(param)) {}
    int status;
    std::string type;   // invalid_request_error, authentication_error, not_found_error, unavailable_error, ...
    std::string param;  // the request field at fault, "" when none
};

// The error body for an HttpError (param null when empty).
json server_error_body(const HttpError& e);

// ---- api.cpp: the generation endpoints' requests and responses ----

enum class ApiKind {
    API_CHAT,        // POST /v1/chat/completions (OpenAI)
    API_COMPLETION,  // POST /v1/completions (OpenAI, legacy completions)
    API_LLAMA,       // POST /completion (llama.cpp's native shape)
};

struct ApiRequest {
    ApiKind kind = ApiKind::API_CHAT;
    SlotRequest slot;             // prompt tokens, generation and sampling parameters
    bool stream = false;
    std::string id;               // "chatcmpl-..." / "cmpl-..."
    int64_t created = 0;          // unix time of the request
};

// Checks and converts a request body. Throws HttpError (400, naming the field; 404 for an unknown model) on a
// wrong type, an out-of-range value, an unsupported option, a prompt longer than a slot's context, or a
// max_tokens the context cannot hold.
ApiRequest api_parse(ApiKind kind, const json& body, const ServerState& state);

// The whole response of a finished non-streamed request.
json api_response(const ApiRequest& req, const GenerateResult& r, const ServerState& state, int slot);
// Server-sent events of a streamed request: the first (chat: the assistant role), one per text piece, and the
// last ones (finish reason and usage; "[DONE]" for the OpenAI kinds), each "data: ...\n\n".
std::string api_stream_begin(const ApiRequest& req, const ServerState& state);
std::string api_stream_piece(const ApiRequest& req, const std::string& piece, const ServerState& state, int slot);
std::string api_stream_end(const ApiRequest& req, const GenerateResult& r, const ServerState& state, int slot);

// JSON text of `j`; invalid UTF-8 in strings (a character cut by max_tokens) becomes U+FFFD instead of throwing.
std::string json_text(const json& j);

// ---- metrics.cpp ----

// The counters in Prometheus' text exposition format (version 0.0.4).
std::string server_metrics_text(const SlotMetrics& m);

// ---- routes.cpp ----

// Registers every endpoint, the API-key check, JSON error pages and limits on `http`.
void server_routes(httplib::Server& http, ServerState& state);

}  // namespace ember
