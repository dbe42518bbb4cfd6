// Request and response shapes of the generation endpoints: OpenAI's chat completions and completions (streamed as
// server-sent events ending in "data: [DONE]") and llama.cpp's native /completion.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <mutex>
#include <random>

#include "apps/server/server.h"
#include "engine/chat-session.h"

namespace ember {

namespace {

const char* type_name(const json& v) {
    switch (v.type()) {
        case json::value_t::null: return "null";
        case json::value_t::boolean: return "a boolean";
        case json::value_t::string: return "a string";
        case json::value_t::array: return "an array";
        case json::value_t::object: return "an object";
        case json::value_t::number_integer:
        case json::value_t::number_unsigned: return "an integer";
        case json::value_t::number_float: return "a number";
        default: return "an unsupported value";
    }
}

HttpError bad_field(const std::string& field, const std::string& what) {
    return HttpError(400, field + ": " + what, "invalid_request_error", field);
}

HttpError wrong_type(const std::string& field, const char* expected, const json& v) {
    return bad_field(field, std::string("expected ") + expected + ", found " + type_name(v));
}

// The field's value when present and not null, else nullptr.
const json* field(const json& body, const char* name) {
    auto it = body.find(name);
    return it == body.end() || it->is_null() ? nullptr : &*it;
}

bool get_bool(const json& body, const char* name, bool dflt) {
    const json* v = field(body, name);
    if (!v) return dflt;
    if (!v->is_boolean()) throw wrong_type(name, "a boolean", *v);
    return v->get<bool>();
}

// An integer in [lo, hi]. Floats are refused even when whole: OpenAI's schema says integer.
int64_t get_int(const json& body, const char* name, int64_t dflt, int64_t lo, int64_t hi) {
    const json* v = field(body, name);
    if (!v) return dflt;
    if (!v->is_number_integer()) throw wrong_type(name, "an integer", *v);
    const bool too_big = v->is_number_unsigned() && v->get<uint64_t>() > (uint64_t)std::numeric_limits<int64_t>::max();
    const int64_t x = too_big ? std::numeric_limits<int64_t>::max() : v->get<int64_t>();
    if (x < lo || x > hi)
        throw bad_field(name, "value " + v->dump() + " is out of range (expected " + std::to_string(lo) + " to " +
                                  std::to_string(hi) + ")");
    return x;
}

// A token count from `lo` to n_ctx; -1 (no limit) when absent. Counts past n_ctx could never be generated.
int get_length(const json& body, const char* name, int64_t lo, int n_ctx) {
    const json* v = field(body, name);
    if (!v) return -1;
    if (!v->is_number_integer()) throw wrong_type(name, "an integer", *v);
    if (v->is_number_unsigned() ? v->get<uint64_t>() > (uint64_t)n_ctx : v->get<int64_t>() > n_ctx)
        throw bad_field(name, "value " + v->dump() + " is more than a slot's context holds (n_ctx = " +
                                  std::to_string(n_ctx) + ")");
    if (v->get<int64_t>() < lo)
        throw bad_field(name, "value " + v->dump() + " is out of range (expected " + std::to_string(lo) + " to " +
                                  std::to_string(n_ctx) + ")");
    return (int)v->get<int64_t>();
}

double get_number(const json& body, const char* name, double dflt, double lo, double hi) {
    const json* v = field(body, name);
    if (!v) return dflt;
    if (!v->is_number()) throw wrong_type(name, "a number", *v);
    const double x = v->get<double>();
    if (!std::isfinite(x) || x < lo || x > hi) {
        char buf[128];
        std::snprintf(buf, sizeof buf, "value %s is out of range (expected %g to %g)", v->dump().c_str(), lo, hi);
        throw bad_field(name, buf);
    }
    return x;
}

// "stop": a string or an array of strings.
std::vector<std::string> get_stop(const json& body) {
    const json* v = field(body, "stop");
    if (!v) return {};
    if (v->is_string()) return {v->get<std::string>()};
    if (!v->is_array()) throw wrong_type("stop", "a string or an array of strings", *v);
    if (v->size() > 16) throw bad_field("stop", "at most 16 stop strings, found " + std::to_string(v->size()));
    std::vector<std::string> out;
    for (const json& s : *v) {
        if (!s.is_string()) throw wrong_type("stop", "an array of strings", *v);
        out.push_back(s.get<std::string>());
    }
    return out;
}

// OpenAI's logit_bias: {"token id": bias in [-100, 100]}; llama.cpp also takes [[id, bias], ...].
std::vector<std::pair<int32_t, float>> get_logit_bias(const json& body) {
    const json* v = field(body, "logit_bias");
    if (!v) return {};
    std::vector<std::pair<int32_t, float>> out;
    auto add = [&](const std::string& key, const json& id, const json& bias) {
        if (!bias.is_number() || !std::isfinite(bias.get<double>()) || std::fabs(bias.get<double>()) > 100)
            throw bad_field("logit_bias", "the bias of token " + key + " must be a number from -100 to 100");
        out.emplace_back((int32_t)id.get<int64_t>(), bias.get<float>());
    };
    if (v->is_object()) {
        for (auto it = v->begin(); it != v->end(); ++it) {
            const std::string& key = it.key();
            char* end = nullptr;
            const long long id = std::strtoll(key.c_str(), &end, 10);
            if (key.empty() || *end != '\0' || id < 0 || id > std::numeric_limits<int32_t>::max())
                throw bad_field("logit_bias", "keys must be token ids, found '" + key + "'");
            add(key, json(id), it.value());
        }
    } else if (v->is_array()) {
        for (const json& pair : *v) {
            if (!pair.is_array() || pair.size() != 2 || !pair[0].is_number_integer() || pair[0].get<int64_t>() < 0 ||
                pair[0].get<int64_t>() > std::numeric_limits<int32_t>::max())
                throw bad_field("logit_bias", "expected [token id, bias] pairs, found " + pair.dump());
            add(pair[0].dump(), pair[0], pair[1]);
        }
    } else {
        throw wrong_type("logit_bias", "an object", *v);
    }
    return out;
}

// Options this server does not implement: refused unless they ask for the default.
void refuse_unsupported(const json& body) {
    if (get_int(body, "n", 1, 1, std::numeric_limits<int32_t>::max()) != 1)
        throw bad_field("n", "only one choice per request is supported (n = 1)");
    if (get_int(body, "best_of", 1, 1, std::numeric_limits<int32_t>::max()) != 1)
        throw bad_field("best_of", "only best_of = 1 is supported");
    if (get_bool(body, "echo", false)) throw bad_field("echo", "echoing the prompt is not supported");
    for (const char* name : {"presence_penalty", "frequency_penalty"})
        if (get_number(body, name, 0, -2, 2) != 0)
            throw bad_field(name, "not supported by this server (use repeat_penalty)");
    const json* lp = field(body, "logprobs");
    if (lp && !(lp->is_boolean() && !lp->get<bool>()))
        throw bad_field("logprobs", "log probabilities are not supported");
}

// Chat messages as ChatMessages: roles system/developer, user, assistant; content a string or text parts.
std::vector<ChatMessage> get_messages(const json& body) {
    const json* v = field(body, "messages");
    if (!v) throw bad_field("messages", "required");
    if (!v->is_array()) throw wrong_type("messages", "an array", *v);
    if (v->empty()) throw bad_field("messages", "expected at least one message");
    std::vector<ChatMessage> msgs;
    for (size_t i = 0; i < v->size(); i++) {
        const json& m = (*v)[i];
        const std::string where = "messages[" + std::to_string(i) + "]";
        if (!m.is_object()) throw wrong_type(where, "an object", m);
        const json* role = field(m, "role");
        if (!role || !role->is_string()) throw bad_field(where + ".role", "expected a string");
        std::string r = role->get<std::string>();
        if (r == "developer") r = "system";  // OpenAI's newer name for the system role
        if (r != "system" && r != "user" && r != "assistant")
            throw bad_field(where + ".role", "expected system, developer, user or assistant, found '" + r + "'");
        std::string text;
        const json* content = field(m, "content");
        if (!content) {
            if (r != "assistant") throw bad_field(where + ".content", "required");
        } else if (content->is_string()) {
            text = content->get<std::string>();
        } else if (content->is_array()) {
            for (const json& part : *content) {
                const json* type = part.is_object() ? field(part, "type") : nullptr;
                const json* t = part.is_object() ? field(part, "text") : nullptr;
                if (!type || *type != "text" || !t || !t->is_string())
                    throw bad_field(where + ".content",
                                    "only text parts ({\"type\": \"text\", \"text\": ...}) are supported");
                text += t->get<std::string>();
            }
        } else {
            throw wrong_type(where + ".content", "a string or an array of text parts", *content);
        }
        msgs.push_back({r, text});
    }
    return msgs;
}

// "prompt": a string, an array of one string, or an array of token ids.
std::vector<int32_t> get_prompt(const json& body, const Tokenizer& tok) {
    const json* v = field(body, "prompt");
    if (!v) throw bad_field("prompt", "required");
    const json* p = v;
    if (v->is_array() && v->size() == 1 && (*v)[0].is_string()) p = &(*v)[0];
    if (p->is_string()) return tok.encode(p->get<std::string>(), tok.add_bos_default(), true);
    if (!p->is_array()) throw wrong_type("prompt", "a string or an array of token ids", *p);
    std::vector<int32_t> ids;
    for (const json& t : *p) {
        if (t.is_string() || t.is_array()) throw bad_field("prompt", "only one prompt per request is supported");
        if (!t.is_number_integer()) throw wrong_type("prompt", "an array of token ids", t);
        const int64_t id = t.get<int64_t>();
        if (id < 0 || id >= tok.n_vocab())
            throw bad_field("prompt", "token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                          std::to_string(tok.n_vocab()) + ")");
        ids.push_back((int32_t)id);
    }
    return ids;
}

std::string random_id(const char* prefix) {
    static std::mutex mu;
    static std::mt19937_64 rng(std::random_device{}());
    std::lock_guard<std::mutex> lk(mu);
    char buf[40];
    std::snprintf(buf, sizeof buf, "%s%016llx", prefix, (unsigned long long)rng());
    return buf;
}

json usage(const GenerateResult& r) {
    return {{"prompt_tokens", r.timings.n_prompt},
            {"completion_tokens", r.timings.n_generated},
            {"total_tokens", r.timings.n_prompt + r.timings.n_generated}};
}

// llama.cpp's "timings" object.
json timings(const GenerateTimings& t) {
    const double gen_ms = t.generate_ms();
    return {{"prompt_n", t.n_prompt_eval},
            {"prompt_ms", t.prompt_ms},
            {"prompt_per_token_ms", t.n_prompt_eval > 0 ? t.prompt_ms / t.n_prompt_eval : 0.0},
            {"prompt_per_second", t.prompt_ms > 0 ? 1e3 * t.n_prompt_eval / t.prompt_ms : 0.0},
            {"cache_n", t.n_cached},
            {"predicted_n", t.n_generated},
            {"predicted_ms", gen_ms},
            {"predicted_per_token_ms", t.n_generated > 0 ? gen_ms / t.n_generated : 0.0},
            {"predicted_per_second", gen_ms > 0 ? 1e3 * t.n_generated / gen_ms : 0.0}};
}

// The llama.cpp /completion fields shared by its final object, streamed or not.
json llama_final(const GenerateResult& r, const ServerState& state, int slot) {
    return {{"model", state.model_id},
            {"id_slot", slot},
            {"stop", true},
            {"tokens_predicted", r.timings.n_generated},
            {"tokens_evaluated", r.timings.n_prompt},
            {"tokens_cached", r.timings.n_cached},
            {"stop_type", r.finish == FinishReason::FINISH_EOG            ? "eos"
                          : r.finish == FinishReason::FINISH_STOP_STRING ? "word"
                                                                          : "limit"},
            {"stopped_eos", r.finish == FinishReason::FINISH_EOG},
            {"stopped_word", r.finish == FinishReason::FINISH_STOP_STRING},
            {"stopped_limit", r.finish == FinishReason::FINISH_LENGTH || r.finish == FinishReason::FINISH_CONTEXT_FULL},
            {"stopping_word", r.stop},
            {"truncated", false},
            {"timings", timings(r.timings)}};
}

std::string event(const json& j) { return "data: " + json_text(j) + "\n\n"; }

json chunk_head(const ApiRequest& req, const ServerState& state) {
    return {{"id", req.id},
            {"object", req.kind == ApiKind::API_CHAT ? "chat.completion.chunk" : "text_completion"},
            {"created", req.created},
            {"model", state.model_id}};
}

}  // namespace

std::string json_text(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json server_error_body(const HttpError& e) {
    json err = {{"code", e.status}, {"message", e.what()}, {"type", e.type}};
    err["param"] = e.param.empty() ? json(nullptr) : json(e.param);
    return {{"error", err}};
}

ApiRequest api_parse(ApiKind kind, const json& body, const ServerState& state) {
    if (!body.is_object())
        throw HttpError(400, std::string("request body: expected a JSON object, found ") + type_name(body));
    const Tokenizer& tok = state.model->tokenizer();
    const int n_ctx = state.slots->n_ctx();
    ApiRequest req;
    req.kind = kind;
    req.created = (int64_t)std::time(nullptr);
    req.id = random_id(kind == ApiKind::API_CHAT ? "chatcmpl-" : "cmpl-");

    if (const json* m = field(body, "model")) {
        if (!m->is_string()) throw wrong_type("model", "a string", *m);
        const std::string name = m->get<std::string>();
        if (!name.empty() && name != state.model_id && name != state.params.model.path)
            throw HttpError(404, "The model '" + name + "' does not exist; this server serves '" + state.model_id + "'",
                            "not_found_error", "model");
    }
    req.stream = get_bool(body, "stream", false);
    if (const json* so = field(body, "stream_options"))
        if (!so->is_object()) throw wrong_type("stream_options", "an object", *so);
    refuse_unsupported(body);

    // Generation length: OpenAI's max_tokens (or max_completion_tokens), llama.cpp's n_predict (-1: no limit).
    GenerateParams& g = req.slot.generate;
    if (kind == ApiKind::API_LLAMA) {
        g.n_predict = get_length(body, "n_predict", -1, n_ctx);
    } else {
        const char* name = kind == ApiKind::API_CHAT && field(body, "max_completion_tokens") ? "max_completion_tokens"
                                                                                              : "max_tokens";
        g.n_predict = get_length(body, name, 0, n_ctx);
    }
    g.stop = get_stop(body);
    g.ignore_eos = get_bool(body, "ignore_eos", false);
    g.logit_bias = get_logit_bias(body);
    for (const auto& [id, bias] : g.logit_bias)
        if (id >= tok.n_vocab())
            throw bad_field("logit_bias", "token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                              std::to_string(tok.n_vocab()) + ")");

    // Sampling: OpenAI's defaults (temperature 1, top_p 1) for its endpoints, llama.cpp's for /completion.
    SamplerParams& s = req.slot.sampler;
    const bool oai = kind != ApiKind::API_LLAMA;
    s.temp = (float)get_number(body, "temperature", oai ? 1.0 : 0.8, 0, oai ? 2 : 1e6);
    s.top_p = (float)get_number(body, "top_p", oai ? 1.0 : 0.95, 0, 1);
    s.top_k = (int)get_int(body, "top_k", oai ? 0 : 40, 0, std::numeric_limits<int32_t>::max());
    s.min_p = (float)get_number(body, "min_p", oai ? 0.0 : 0.05, 0, 1);
    s.repeat_penalty = (float)get_number(body, "repeat_penalty", 1.0, 1e-3, 1e3);
    s.repeat_last_n = (int)get_int(body, "repeat_last_n", 64, -1, n_ctx);
    if (s.repeat_last_n == -1) s.repeat_last_n = n_ctx;
    const int64_t seed =
        get_int(body, "seed", -1, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
    s.seed = seed == -1 ? 0xFFFFFFFFull : (uint64_t)seed;

    // The prompt.
    if (kind == ApiKind::API_CHAT) {
        const std::vector<ChatMessage> msgs = get_messages(body);
        try {
            req.slot.prompt = chat_tokenize(tok, state.template_name, msgs);
        } catch (const Error& e) {  // a role order the template cannot express
            throw HttpError(400, std::string("messages: ") + e.what(), "invalid_request_error", "messages");
        }
        const std::vector<std::string> stops = chat_stop_strings(state.template_name);
        g.stop.insert(g.stop.end(), stops.begin(), stops.end());
    } else {
        req.slot.prompt = get_prompt(body, tok);
    }
    if (req.slot.prompt.empty()) throw bad_field(kind == ApiKind::API_CHAT ? "messages" : "prompt", "empty prompt");
    if ((int64_t)req.slot.prompt.size() > n_ctx)
        throw HttpError(400, "the prompt has " + std::to_string(req.slot.prompt.size()) +
                                 " tokens, more than a slot's context holds (n_ctx = " + std::to_string(n_ctx) + ")",
                        "invalid_request_error", kind == ApiKind::API_CHAT ? "messages" : "prompt");
    return req;
}

json api_response(const ApiRequest& req, const GenerateResult& r, const ServerState& state, int slot) {
    const char* finish = finish_reason_name(r.finish);
    switch (req.kind) {
        case ApiKind::API_CHAT:
            return {{"id", req.id},
                    {"object", "chat.completion"},
                    {"created", req.created},
                    {"model", state.model_id},
                    {"choices", json::array({{{"index", 0},
                                              {"message", {{"role", "assistant"}, {"content", r.text}}},
                                              {"logprobs", nullptr},
                                              {"finish_reason", finish}}})},
                    {"usage", usage(r)},
                    {"timings", timings(r.timings)}};
        case ApiKind::API_COMPLETION:
            return {{"id", req.id},
                    {"object", "text_completion"},
                    {"created", req.created},
                    {"model", state.model_id},
                    {"choices", json::array({{{"index", 0},
                                              {"text", r.text},
                                              {"logprobs", nullptr},
                                              {"finish_reason", finish}}})},
                    {"usage", usage(r)},
                    {"timings", timings(r.timings)}};
        case ApiKind::API_LLAMA: {
            json j = llama_final(r, state, slot);
            j["content"] = r.text;
            return j;
        }
    }
    throw Error("api_response: unknown kind");
}

std::string api_stream_begin(const ApiRequest& req, const ServerState& state) {
    if (req.kind != ApiKind::API_CHAT) return "";
    json j = chunk_head(req, state);
    j["choices"] = json::array({{{"index", 0},
                                 {"delta", {{"role", "assistant"}, {"content", ""}}},
                                 {"logprobs", nullptr},
                                 {"finish_reason", nullptr}}});
    return event(j);
}

std::string api_stream_piece(const ApiRequest& req, const std::string& piece, const ServerState& state, int slot) {
    if (req.kind == ApiKind::API_LLAMA) return event({{"content", piece}, {"stop", false}, {"id_slot", slot}});
    json j = chunk_head(req, state);
    json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
    if (req.kind == ApiKind::API_CHAT) choice["delta"] = {{"content", piece}};
    else choice["text"] = piece;
    j["choices"] = json::array({choice});
    return event(j);
}

std::string api_stream_end(const ApiRequest& req, const GenerateResult& r, const ServerState& state, int slot) {
    if (req.kind == ApiKind::API_LLAMA) {
        json j = llama_final(r, state, slot);
        j["content"] = "";
        return event(j);
    }
    json j = chunk_head(req, state);
    json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason_name(r.finish)}};
    if (req.kind == ApiKind::API_CHAT) choice["delta"] = json::object();
    else choice["text"] = "";
    j["choices"] = json::array({choice});
    j["usage"] = usage(r);
    j["timings"] = timings(r.timings);
    return event(j) + "data: [DONE]\n\n";
}

}  // namespace ember
