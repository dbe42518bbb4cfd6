// ember-server's endpoints. Every error a client can cause answers with a 4xx and an OpenAI-style JSON body, and
// the server goes on serving: /health (503 while loading), /v1/models, /v1/chat/completions, /v1/completions,
// /completion, /tokenize, /detokenize, /props, /metrics, and the chat page at /.
#include <httplib.h>

#include <memory>

#include "apps/server/server.h"
#include "apps/server/web-page.h"  // generated at build time from apps/server/web/index.html (apps/server/app.cmake)
#include "engine/utf8.h"

namespace ember {

namespace {

using httplib::Request;
using httplib::Response;
using HandlerResponse = httplib::Server::HandlerResponse;

void send_json(Response& res, int status, const json& j) {
    res.status = status;
    res.set_content(json_text(j), "application/json; charset=utf-8");
}

void send_error(Response& res, const HttpError& e) {
    if (e.status == 503) res.set_header("Retry-After", "1");
    send_json(res, e.status, server_error_body(e));
}

// Runs a handler body; an HttpError becomes its status and body, any other exception a 500.
template <typename F>
void guarded(Response& res, F&& body) {
    try {
        body();
    } catch (const HttpError& e) {
        send_error(res, e);
    } catch (const std::exception& e) {
        send_error(res, HttpError(500, e.what(), "server_error"));
    }
}

json parse_body(const Request& req) {
    json body;
    try {
        body = json::parse(req.body);
    } catch (const json::exception& e) {  // malformed JSON, invalid UTF-8 in a string
        throw HttpError(400, std::string("request body is not valid JSON: ") + e.what());
    }
    if (!body.is_object()) throw HttpError(400, "request body: expected a JSON object, found " + body.dump());
    return body;
}

// The key from "Authorization: Bearer KEY" or "X-Api-Key: KEY", compared in constant time.
bool authorized(const Request& req, const std::string& key) {
    std::string given = req.get_header_value("X-Api-Key");
    const std::string auth = req.get_header_value("Authorization");
    if (auth.compare(0, 7, "Bearer ") == 0) given = auth.substr(7);
    if (given.size() != key.size()) return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < key.size(); i++) diff |= (unsigned char)(given[i] ^ key[i]);
    return diff == 0;
}

std::string event(const json& j) { return "data: " + json_text(j) + "\n\n"; }

void handle_generate(ServerState& st, ApiKind kind, const Request& hreq, Response& res) {
    const ApiRequest req = api_parse(kind, parse_body(hreq), st);
    std::shared_ptr<SlotTask> task;
    try {
        task = st.slots->submit(req.slot);
    } catch (const Error& e) {  // a value the engine refuses, or a server going down
        const bool down = std::string(e.what()).find("shutting down") != std::string::npos;
        throw HttpError(down ? 503 : 400, e.what(), down ? "unavailable_error" : "invalid_request_error");
    }
    if (!task)
        throw HttpError(503,
                        "the server is busy: all " + std::to_string(st.slots->n_slots()) +
                            " slots are generating and the queue holds " + std::to_string(st.params.slots.n_queue) +
                            " waiting requests (its limit, --max-queue); retry later",
                        "unavailable_error");
    if (!req.stream) {
        std::vector<std::string> pieces;
        while (task->wait(&pieces)) pieces.clear();
        const std::string err = task->error();
        if (!err.empty())
            throw HttpError(err.find("shutting down") != std::string::npos ? 503 : 500, err, "server_error");
        send_json(res, 200, api_response(req, task->result(), st, task->slot()));
        return;
    }
    // Streamed: the provider runs on this connection's thread after the handler returns, writing events as the
    // scheduler produces text. A write that fails means the client is gone: the task is cancelled, freeing its slot.
    res.set_header("Cache-Control", "no-cache");
    auto begun = std::make_shared<bool>(false);
    ServerState* s = &st;
    res.set_chunked_content_provider(
        "text/event-stream",
        [s, req, task, begun](size_t, httplib::DataSink& sink) {
            auto write = [&](const std::string& text) {
                if (text.empty() || sink.write(text.data(), text.size())) return true;
                task->cancel();
                return false;
            };
            if (!*begun) {
                *begun = true;
                if (!write(api_stream_begin(req, *s))) return false;
            }
            std::vector<std::string> pieces;
            const bool more = task->wait(&pieces);
            const int slot = task->slot();
            for (const std::string& p : pieces)
                if (!write(api_stream_piece(req, p, *s, slot))) return false;
            if (more) return true;
            const std::string err = task->error();
            if (!write(err.empty() ? api_stream_end(req, task->result(), *s, slot)
                                   : event(server_error_body(HttpError(500, err, "server_error")))))
                return false;
            sink.done();
            return true;
        },
        [task](bool success) {
            if (!success) task->cancel();
        });
}

// POST /tokenize (llama.cpp): {"content", "add_special" = false, "parse_special" = true, "with_pieces" = false}.
void handle_tokenize(const ServerState& st, const Request& hreq, Response& res) {
    const json body = parse_body(hreq);
    auto flag = [&](const char* name, bool dflt) {
        auto it = body.find(name);
        if (it == body.end() || it->is_null()) return dflt;
        if (!it->is_boolean())
            throw HttpError(400, std::string(name) + ": expected a boolean", "invalid_request_error", name);
        return it->get<bool>();
    };
    auto content = body.find("content");
    if (content == body.end() || !content->is_string())
        throw HttpError(400, "content: expected a string", "invalid_request_error", "content");
    const Tokenizer& tok = st.model->tokenizer();
    const bool add_special = flag("add_special", false), parse_special = flag("parse_special", true);
    const bool with_pieces = flag("with_pieces", false);
    const std::vector<int32_t> ids =
        tok.encode(content->get<std::string>(), add_special && tok.add_bos_default(), parse_special);
    json tokens = json::array();
    for (int32_t id : ids) {
        if (!with_pieces) {
            tokens.push_back(id);
            continue;
        }
        const std::string piece = tok.token_to_piece(id, true);
        json p = piece;
        if (utf8_sanitize(piece) != piece) {  // part of a character: its bytes, as llama.cpp gives them
            p = json::array();
            for (unsigned char c : piece) p.push_back((int)c);
        }
        tokens.push_back({{"id", id}, {"piece", p}});
    }
    send_json(res, 200, {{"tokens", tokens}});
}

// POST /detokenize (llama.cpp): {"tokens": [ids]} -> {"content"}.
void handle_detokenize(const ServerState& st, const Request& hreq, Response& res) {
    const json body = parse_body(hreq);
    auto tokens = body.find("tokens");
    if (tokens == body.end() || !tokens->is_array())
        throw HttpError(400, "tokens: expected an array of token ids", "invalid_request_error", "tokens");
    const int n_vocab = st.model->tokenizer().n_vocab();
    std::vector<int32_t> ids;
    for (const json& t : *tokens) {
        if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= n_vocab)
            throw HttpError(400, "tokens: " + t.dump() + " is not a token id in [0, " + std::to_string(n_vocab) + ")",
                            "invalid_request_error", "tokens");
        ids.push_back((int32_t)t.get<int64_t>());
    }
    send_json(res, 200, {{"content", st.model->tokenizer().decode(ids)}});
}

json models_list(const ServerState& st) {
    const ModelInfo& i = st.model->info();
    return {{"object", "list"},
            {"data", json::array({{{"id", st.model_id},
                                   {"object", "model"},
                                   {"created", st.created},
                                   {"owned_by", "ember"},
                                   {"meta",
                                    {{"arch", i.arch},
                                     {"n_vocab", i.n_vocab},
                                     {"n_ctx_train", i.n_ctx_train},
                                     {"n_embd", i.dim},
                                     {"n_params", i.n_params},
                                     {"size", i.weight_bytes}}}}})}};
}

}  // namespace

void server_routes(httplib::Server& http, ServerState& state) {
    ServerState& st = state;
    http.set_payload_max_length(32u << 20);

    // Before any route: the API key (all but /health and the page, which holds no data and cannot send a header
    // when a browser opens it), then 503 while the model loads.
    http.set_pre_routing_handler([&st](const Request& req, Response& res) {
        if (req.path == "/health" || req.path == "/v1/health" || (req.method == "GET" && req.path == "/"))
            return HandlerResponse::Unhandled;
        if (!st.params.api_key.empty() && !authorized(req, st.params.api_key)) {
            send_error(res, HttpError(401, "invalid or missing API key (send 'Authorization: Bearer KEY')",
                                      "authentication_error"));
            return HandlerResponse::Handled;
        }
        if (!st.ready) {
            send_error(res, HttpError(503, "Loading model", "unavailable_error"));
            return HandlerResponse::Handled;
        }
        return HandlerResponse::Unhandled;
    });
    // Errors httplib makes itself (unknown path, body too large, bad request line) get a JSON body too.
    http.set_error_handler(httplib::Server::HandlerWithResponse([](const Request& req, Response& res) {
        if (!res.body.empty()) return HandlerResponse::Unhandled;
        const std::string what = res.status == 404 ? "no such endpoint: " + req.method + " " + req.path
                                 : res.status == 413 ? "request body too large (at most 32 MiB)"
                                                     : "HTTP error " + std::to_string(res.status);
        send_error(res, HttpError(res.status, what, res.status == 404 ? "not_found_error" : "invalid_request_error"));
        return HandlerResponse::Handled;
    }));
    http.set_exception_handler([](const Request&, Response& res, std::exception_ptr ep) {
        try {
            std::rethrow_exception(ep);
        } catch (const std::exception& e) {
            send_error(res, HttpError(500, e.what(), "server_error"));
        } catch (...) {
            send_error(res, HttpError(500, "unknown error", "server_error"));
        }
    });

    auto health = [&st](const Request&, Response& res) {
        if (!st.ready) send_error(res, HttpError(503, "Loading model", "unavailable_error"));
        else send_json(res, 200, {{"status", "ok"}});
    };
    http.Get("/health", health);
    http.Get("/v1/health", health);
    http.Get("/", [](const Request&, Response& res) {
        res.set_content(reinterpret_cast<const char*>(kServerWebPage), kServerWebPageSize, "text/html; charset=utf-8");
    });
    auto models = [&st](const Request&, Response& res) { guarded(res, [&] { send_json(res, 200, models_list(st)); }); };
    http.Get("/v1/models", models);
    http.Get("/models", models);
    http.Get("/props", [&st](const Request&, Response& res) {
        guarded(res, [&] {
            send_json(res, 200,
                      {{"model_id", st.model_id},
                       {"model_path", st.params.model.path},
                       {"chat_template", st.template_name},
                       {"total_slots", st.slots->n_slots()},
                       {"default_generation_settings", {{"n_ctx", st.slots->n_ctx()}}},
                       {"build_info", version_string()}});
        });
    });
    for (const char* path : {"/v1/chat/completions", "/chat/completions"})
        http.Post(path, [&st](const Request& req, Response& res) {
            guarded(res, [&] { handle_generate(st, ApiKind::API_CHAT, req, res); });
        });
    for (const char* path : {"/v1/completions", "/completions"})
        http.Post(path, [&st](const Request& req, Response& res) {
            guarded(res, [&] { handle_generate(st, ApiKind::API_COMPLETION, req, res); });
        });
    http.Post("/completion", [&st](const Request& req, Response& res) {
        guarded(res, [&] { handle_generate(st, ApiKind::API_LLAMA, req, res); });
    });
    http.Post("/tokenize", [&st](const Request& req, Response& res) {
        guarded(res, [&] { handle_tokenize(st, req, res); });
    });
    http.Post("/detokenize", [&st](const Request& req, Response& res) {
        guarded(res, [&] { handle_detokenize(st, req, res); });
    });
    http.Get("/metrics", [&st](const Request&, Response& res) {
        if (!st.params.metrics) {
            send_error(res, HttpError(501, "the metrics endpoint is off: start the server with --metrics",
                                      "not_supported_error"));
            return;
        }
        res.set_content(server_metrics_text(st.slots->metrics()), "text/plain; version=0.0.4; charset=utf-8");
    });
}

}  // namespace ember
