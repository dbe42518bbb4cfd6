// ember-server end to end on the real stories260K model: the built binary on a loopback port, driven over HTTP.
// Endpoints and their OpenAI / llama.cpp shapes (greedy text against llama.cpp's reference), every kind of bad input
// (a 4xx with an OpenAI-style body, and the server still answering /health), the API key, a full queue (503), a
// client hanging up mid-stream (its slot freed at once), 16 clients streaming at once (each gets its solo text;
// aggregate tokens/s with -np 8 and -np 1), 503 while loading (the routes in-process), and shutdown on SIGTERM.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "apps/server/server.h"
#include "tests/server-test-util.h"

using namespace ember_test;

namespace {

const std::string kModel = std::string(EMBER_SHARED_DIR) + "/testdata/stories260K.gguf";
const std::string kReference = std::string(EMBER_SHARED_DIR) + "/testdata/reference/stories260K.llama-cpp.json";

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// One server for the tests that need nothing special: 2 slots of 1024 tokens, metrics on, and an F32 KV cache like
// the one llama.cpp's reference ran with.
class ServerE2E : public testing::Test {
protected:
    static void SetUpTestSuite() {
        server_ = new ServerProcess(
            {"-m", kModel, "-np", "2", "-c", "2048", "-t", "1", "--metrics", "-ctk", "f32", "-ctv", "f32"});
        const json ref = json::parse(slurp(kReference));
        prompt_ = new std::string(ref["cases"][0]["prompt"].get<std::string>());
        greedy_ = new std::string(ref["cases"][0]["greedy_text"].get<std::string>());
    }
    static void TearDownTestSuite() {
        delete server_;
        delete prompt_;
        delete greedy_;
    }
    void SetUp() override { ASSERT_TRUE(server_->ok()) << server_->log(); }
    static int port() { return server_->port(); }

    static ServerProcess* server_;
    static std::string* prompt_;  // "Once upon a time"
    static std::string* greedy_;  // llama.cpp's 64 greedy tokens after it
};

ServerProcess* ServerE2E::server_ = nullptr;
std::string* ServerE2E::prompt_ = nullptr;
std::string* ServerE2E::greedy_ = nullptr;

json chat_body(const std::string& user, int max_tokens) {
    return {{"messages", json::array({{{"role", "user"}, {"content", user}}})},
            {"max_tokens", max_tokens},
            {"temperature", 0}};
}

// The concatenated text of a streamed request, and its last JSON event before [DONE].
struct Streamed {
    int status = 0;
    std::string text;
    json last;
    int n_events = 0;
    bool done = false;  // saw "data: [DONE]"
};

Streamed stream(int port, const std::string& path, json body, const std::string& key = "") {
    body["stream"] = true;
    Streamed s;
    s.status = http_stream(
        port, path, body.dump(),
        [&](const std::string& data) {
            if (data == "[DONE]") {
                s.done = true;
                return true;
            }
            const json j = json::parse(data, nullptr, false);
            if (j.is_discarded()) return false;
            s.n_events++;
            s.last = j;
            if (j.contains("content")) s.text += j["content"].get<std::string>();  // /completion
            if (j.contains("choices") && !j["choices"].empty()) {
                const json& c = j["choices"][0];
                if (c.contains("text")) s.text += c["text"].get<std::string>();
                if (c.contains("delta") && c["delta"].contains("content"))
                    s.text += c["delta"]["content"].get<std::string>();
            }
            return true;
        },
        key);
    return s;
}

}  // namespace

TEST_F(ServerE2E, HealthModelsAndThePage) {
    const HttpReply h = http_get(port(), "/health");
    EXPECT_EQ(h.status, 200);
    EXPECT_EQ(h.j(), json({{"status", "ok"}}));
    const HttpReply m = http_get(port(), "/v1/models");
    ASSERT_EQ(m.status, 200) << m.body;
    EXPECT_EQ(m.j()["object"], "list");
    ASSERT_EQ(m.j()["data"].size(), 1u);
    EXPECT_EQ(m.j()["data"][0]["id"], "stories260K.gguf");
    EXPECT_EQ(m.j()["data"][0]["object"], "model");
    // GET / serves the page embedded at build time, byte for byte.
    const HttpReply page = http_get(port(), "/");
    ASSERT_EQ(page.status, 200);
    EXPECT_TRUE(contains(header(page, "Content-Type"), "text/html"));
    std::string expected = slurp(std::string(EMBER_SOURCE_DIR) + "/apps/server/web/index.html");
    if (expected.empty()) expected = slurp(std::string(EMBER_SOURCE_DIR) + "/apps/server/placeholder.html");
    EXPECT_EQ(page.body, expected);
}

TEST_F(ServerE2E, CompletionsGreedyTextMatchesLlamaCpp) {
    const json body = {{"model", "stories260K.gguf"}, {"prompt", *prompt_}, {"max_tokens", 64}, {"temperature", 0}};
    const HttpReply r = http_post(port(), "/v1/completions", body.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    const json j = r.j();
    EXPECT_EQ(j["object"], "text_completion");
    EXPECT_TRUE(j["id"].get<std::string>().rfind("cmpl-", 0) == 0) << j["id"];
    EXPECT_EQ(j["model"], "stories260K.gguf");
    EXPECT_EQ(j["choices"][0]["text"], *greedy_);
    EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(j["choices"][0]["index"], 0);
    EXPECT_EQ(j["usage"]["prompt_tokens"], 5);  // BOS + 4
    EXPECT_EQ(j["usage"]["completion_tokens"], 64);
    EXPECT_EQ(j["usage"]["total_tokens"], 69);

    // Streamed: the same text in pieces, the finish reason and usage in the last chunk, then [DONE].
    const Streamed s = stream(port(), "/v1/completions", body);
    EXPECT_EQ(s.status, 200);
    EXPECT_EQ(s.text, *greedy_);
    EXPECT_TRUE(s.done);
    EXPECT_GE(s.n_events, 64);
    EXPECT_EQ(s.last["object"], "text_completion");
    EXPECT_EQ(s.last["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(s.last["usage"]["completion_tokens"], 64);

    // llama.cpp's /completion: n_predict, its own field names; streamed without [DONE].
    const json native = {{"prompt", *prompt_}, {"n_predict", 64}, {"temperature", 0}};
    const HttpReply n = http_post(port(), "/completion", native.dump());
    ASSERT_EQ(n.status, 200) << n.body;
    EXPECT_EQ(n.j()["content"], *greedy_);
    EXPECT_EQ(n.j()["tokens_predicted"], 64);
    EXPECT_EQ(n.j()["tokens_evaluated"], 5);
    EXPECT_EQ(n.j()["stop"], true);
    EXPECT_EQ(n.j()["stopped_limit"], true);
    EXPECT_GT(n.j()["timings"]["predicted_per_second"].get<double>(), 0.0);
    const Streamed ns = stream(port(), "/completion", native);
    EXPECT_EQ(ns.text, *greedy_);
    EXPECT_FALSE(ns.done);
    EXPECT_EQ(ns.last["stop"], true);
    EXPECT_EQ(ns.last["tokens_predicted"], 64);
}

TEST_F(ServerE2E, ChatCompletionStreamedAndNot) {
    const json body = chat_body("Tell me a story about a dog.", 20);
    const HttpReply r = http_post(port(), "/v1/chat/completions", body.dump());
    ASSERT_EQ(r.status, 200) << r.body;
    const json j = r.j();
    EXPECT_EQ(j["object"], "chat.completion");
    EXPECT_TRUE(j["id"].get<std::string>().rfind("chatcmpl-", 0) == 0) << j["id"];
    EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
    const std::string text = j["choices"][0]["message"]["content"];
    EXPECT_FALSE(text.empty());
    const std::string finish = j["choices"][0]["finish_reason"];
    EXPECT_TRUE(finish == "stop" || finish == "length") << finish;
    // The prompt is the plain template's "User: ...\nAssistant:" (stories260K has no chat template).
    const HttpReply tok = http_post(port(), "/tokenize",
                                    json({{"content", "User: Tell me a story about a dog.\nAssistant:"},
                                          {"add_special", true}}).dump());
    EXPECT_EQ(j["usage"]["prompt_tokens"], tok.j()["tokens"].size());

    const Streamed s = stream(port(), "/v1/chat/completions", body);
    EXPECT_EQ(s.status, 200);
    EXPECT_EQ(s.text, text);
    EXPECT_TRUE(s.done);
    EXPECT_EQ(s.last["object"], "chat.completion.chunk");
    EXPECT_EQ(s.last["choices"][0]["finish_reason"], finish);
    EXPECT_EQ(s.last["usage"], j["usage"]);
    EXPECT_TRUE(contains(server_->log(), "plain 'User: ... / Assistant:' format")) << "the fallback must be logged";
}

TEST_F(ServerE2E, StopSeedTemperatureAndLogitBias) {
    auto completion = [&](json extra) {
        json body = {{"prompt", *prompt_}, {"max_tokens", 64}, {"temperature", 0}};
        body.update(extra);
        const HttpReply r = http_post(port(), "/v1/completions", body.dump());
        EXPECT_EQ(r.status, 200) << r.body;
        return r.j()["choices"][0];
    };
    const json stopped = completion({{"stop", json::array({"never", "Lily"})}});
    EXPECT_EQ(stopped["text"], greedy_->substr(0, greedy_->find("Lily")));
    EXPECT_EQ(stopped["finish_reason"], "stop");
    EXPECT_EQ(completion({{"stop", "park"}})["text"], greedy_->substr(0, greedy_->find("park")));
    // Sampling at temperature 1: the same seed gives the same text, another seed (almost surely) another.
    const json a = completion({{"temperature", 1.0}, {"seed", 42}});
    const json b = completion({{"temperature", 1.0}, {"seed", 42}});
    const json c = completion({{"temperature", 1.0}, {"seed", 43}});
    EXPECT_EQ(a["text"], b["text"]);
    EXPECT_NE(a["text"], c["text"]);
    EXPECT_NE(a["text"], *greedy_);
    // max_tokens and a logit bias making EOS (id 2) the greedy choice.
    EXPECT_EQ(completion({{"max_tokens", 3}})["finish_reason"], "length");
    const json eos = completion({{"logit_bias", {{"2", 100}}}});
    EXPECT_EQ(eos["text"], "");
    EXPECT_EQ(eos["finish_reason"], "stop");
}

TEST_F(ServerE2E, TokenizeAndDetokenize) {
    const HttpReply t = http_post(port(), "/tokenize", json({{"content", *prompt_}}).dump());
    ASSERT_EQ(t.status, 200) << t.body;
    const json ids = t.j()["tokens"];
    EXPECT_EQ(ids.size(), 4u);  // no BOS unless add_special
    const HttpReply tb = http_post(port(), "/tokenize", json({{"content", *prompt_}, {"add_special", true}}).dump());
    EXPECT_EQ(tb.j()["tokens"].size(), 5u);
    EXPECT_EQ(tb.j()["tokens"][0], 1);
    const HttpReply p = http_post(port(), "/tokenize", json({{"content", "a cat"}, {"with_pieces", true}}).dump());
    ASSERT_EQ(p.status, 200);
    std::string joined;
    const json pieces = p.j()["tokens"];
    for (const json& x : pieces) {
        EXPECT_TRUE(x["id"].is_number_integer());
        joined += x["piece"].get<std::string>();
    }
    EXPECT_EQ(joined, " a cat");
    const HttpReply d = http_post(port(), "/detokenize", json({{"tokens", ids}}).dump());
    ASSERT_EQ(d.status, 200) << d.body;
    EXPECT_EQ(d.j()["content"], *prompt_);
    // "😀" is four byte tokens (<0xF0> = id 3 + 0xF0, ...), each a cut character: pieces are given as bytes, and
    // text holding a cut character is sent as valid JSON with U+FFFD in its place (as text max_tokens cuts would be).
    const HttpReply bp =
        http_post(port(), "/tokenize", json({{"content", "\xF0\x9F\x98\x80"}, {"with_pieces", true}}).dump());
    ASSERT_EQ(bp.status, 200) << bp.body;
    const json bt = bp.j()["tokens"];
    ASSERT_EQ(bt.size(), 5u) << bp.body;  // a leading space, then the four bytes
    EXPECT_EQ(bt[1]["id"], 3 + 0xF0);
    EXPECT_EQ(bt[1]["piece"], json::array({0xF0}));
    const HttpReply bd = http_post(port(), "/detokenize", json({{"tokens", {3 + 0xF0}}}).dump());
    ASSERT_EQ(bd.status, 200) << bd.body;
    EXPECT_EQ(bd.j()["content"], "\xEF\xBF\xBD");
}

TEST_F(ServerE2E, MetricsArePrometheusText) {
    ASSERT_EQ(http_post(port(), "/v1/completions", json({{"prompt", "Hi"}, {"max_tokens", 5}}).dump()).status, 200);
    const HttpReply m = http_get(port(), "/metrics");
    ASSERT_EQ(m.status, 200);
    EXPECT_TRUE(contains(header(m, "Content-Type"), "text/plain"));
    EXPECT_TRUE(contains(m.body, "# TYPE ember_tokens_predicted_total counter\n"));
    EXPECT_TRUE(contains(m.body, "# TYPE ember_requests_processing gauge\n"));
    EXPECT_TRUE(contains(m.body, "\nember_slots 2\n"));
    std::smatch sm;
    ASSERT_TRUE(std::regex_search(m.body, sm, std::regex(R"(\nember_tokens_predicted_total ([0-9]+)\n)"))) << m.body;
    EXPECT_GE(std::stoll(sm[1]), 5);
    ASSERT_TRUE(std::regex_search(m.body, sm, std::regex(R"(\nember_prompt_tokens_total ([0-9]+)\n)")));
    EXPECT_GE(std::stoll(sm[1]), 1);
    // Every sample line is "name value" under its HELP and TYPE.
    std::istringstream in(m.body);
    int samples = 0;
    for (std::string line; std::getline(in, line);)
        if (!line.empty() && line[0] != '#') {
            EXPECT_TRUE(std::regex_match(line, std::regex(R"(ember_[a-z_]+ -?[0-9.e+-]+)"))) << line;
            samples++;
        }
    EXPECT_GE(samples, 15);
}

TEST_F(ServerE2E, BadInputGets4xxAndTheServerKeepsServing) {
    const std::string chat = "/v1/chat/completions", cmpl = "/v1/completions";
    auto msgs = [](json extra) {
        json b = chat_body("Hi", 4);
        b.update(extra);
        return b.dump();
    };
    std::string long_prompt;
    for (int i = 0; i < 1500; i++) long_prompt += "dog ";
    struct Case {
        std::string path, body;
        int status;
        std::string in_message;  // a part of the error message ("" = anything)
    };
    const std::vector<Case> cases = {
        {chat, "{", 400, "not valid JSON"},
        {chat, "", 400, "not valid JSON"},
        {chat, "[1, 2]", 400, "expected a JSON object"},
        {chat, R"({"messages": "hi"})", 400, "messages"},
        {chat, R"({"messages": []})", 400, "messages"},
        {chat, R"({"messages": [{"role": "robot", "content": "x"}]})", 400, "role"},
        {chat, R"({"messages": [{"role": "user", "content": 5}]})", 400, "content"},
        {chat, R"({"max_tokens": 4})", 400, "messages"},
        {chat, msgs({{"max_tokens", "10"}}), 400, "max_tokens: expected an integer, found a string"},
        {chat, msgs({{"max_tokens", -5}}), 400, "max_tokens"},
        {chat, msgs({{"max_tokens", 1000000000000}}), 400, "max_tokens"},
        {chat, R"({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 18446744073709551615})", 400,
         "max_tokens"},
        {chat, msgs({{"max_tokens", 2.5}}), 400, "max_tokens"},
        {chat, msgs({{"max_completion_tokens", -1}}), 400, "max_completion_tokens"},
        {chat, msgs({{"temperature", "hot"}}), 400, "temperature"},
        {chat, msgs({{"temperature", -1}}), 400, "temperature"},
        {chat, msgs({{"top_p", 1.5}}), 400, "top_p"},
        {chat, msgs({{"stream", "yes"}}), 400, "stream"},
        {chat, msgs({{"stop", 5}}), 400, "stop"},
        {chat, msgs({{"seed", "x"}}), 400, "seed"},
        {chat, msgs({{"n", 2}}), 400, "n:"},
        {chat, msgs({{"model", "gpt-4"}}), 404, "gpt-4"},
        {chat, msgs({{"model", 7}}), 400, "model"},
        {chat, msgs({{"messages", json::array({{{"role", "user"}, {"content", long_prompt}}})}}), 400, "n_ctx"},
        {chat, "{\"messages\": [{\"role\": \"user\", \"content\": \"bad \xff\xfe bytes\"}]}", 400, "UTF-8"},
        {cmpl, R"({"prompt": {}})", 400, "prompt"},
        {cmpl, R"({"max_tokens": 4})", 400, "prompt: required"},
        {cmpl, R"({"prompt": [1, 99999]})", 400, "vocabulary"},
        {cmpl, R"({"prompt": ["a", "b"]})", 400, "one prompt"},
        {cmpl, R"({"prompt": "Hi", "logit_bias": {"abc": 1}})", 400, "logit_bias"},
        {cmpl, R"({"prompt": "Hi", "logit_bias": {"99999": 1}})", 400, "logit_bias"},
        {cmpl, R"({"prompt": "Hi", "logit_bias": {"5": "x"}})", 400, "logit_bias"},
        {cmpl, R"({"prompt": "Hi", "echo": true})", 400, "echo"},
        {cmpl, json({{"prompt", long_prompt}}).dump(), 400, "n_ctx"},
        {cmpl, R"({"prompt": "Hi", "model": "davinci"})", 404, "davinci"},
        {"/completion", R"({"prompt": "Hi", "n_predict": -2})", 400, "n_predict"},
        {"/completion", R"({"prompt": "Hi", "n_predict": 1000000000000})", 400, "n_predict"},
        {"/tokenize", R"({"content": 5})", 400, "content"},
        {"/tokenize", "{\"content\": \"\xc3\x28\"}", 400, "UTF-8"},
        {"/detokenize", R"({"tokens": [-1]})", 400, "tokens"},
        {"/detokenize", R"({"tokens": "a"})", 400, "tokens"},
        {"/no/such/endpoint", "{}", 404, "no such endpoint"},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.path + " " + c.body.substr(0, 120));
        const HttpReply r = http_post(port(), c.path, c.body);
        EXPECT_EQ(r.status, c.status) << r.body;
        const json j = r.j();
        ASSERT_TRUE(j.is_object() && j.contains("error")) << r.body;
        EXPECT_EQ(j["error"]["code"], c.status);
        EXPECT_TRUE(j["error"]["type"].is_string());
        const std::string message = j["error"]["message"];
        EXPECT_TRUE(contains(message, c.in_message)) << message;
        const HttpReply h = http_get(port(), "/health");
        EXPECT_EQ(h.status, 200) << "the server must keep serving";
    }
    // A streamed request with bad input fails before streaming: a plain 4xx too.
    EXPECT_EQ(stream(port(), chat, json::parse(msgs({{"max_tokens", -1}}))).status, 400);
    // And it still generates.
    EXPECT_EQ(http_post(port(), chat, chat_body("Hi", 4).dump()).status, 200);
    EXPECT_TRUE(server_->running());
}

TEST(ServerE2EOptions, ApiKeyOnEveryEndpointButHealth) {
    ServerProcess s({"-m", kModel, "-c", "512", "-t", "1", "--metrics", "--api-key", "sekrit"});
    ASSERT_TRUE(s.ok()) << s.log();
    const int port = s.port();
    EXPECT_EQ(http_get(port, "/health").status, 200);
    EXPECT_EQ(http_get(port, "/").status, 200);  // the page holds no data; its API calls send the key
    const std::string cmpl = json({{"prompt", "Hi"}, {"max_tokens", 2}}).dump();
    for (const std::string& key : {std::string(), std::string("wrong"), std::string("sekri")}) {
        SCOPED_TRACE("key '" + key + "'");
        const HttpReply m = http_get(port, "/v1/models", key);
        EXPECT_EQ(m.status, 401);
        EXPECT_EQ(m.j()["error"]["type"], "authentication_error");
        EXPECT_EQ(http_get(port, "/metrics", key).status, 401);
        EXPECT_EQ(http_get(port, "/props", key).status, 401);
        EXPECT_EQ(http_post(port, "/v1/completions", cmpl, key).status, 401);
        EXPECT_EQ(http_post(port, "/v1/chat/completions", chat_body("Hi", 2).dump(), key).status, 401);
        EXPECT_EQ(http_post(port, "/completion", cmpl, key).status, 401);
        EXPECT_EQ(http_post(port, "/tokenize", R"({"content": "a"})", key).status, 401);
        EXPECT_EQ(http_post(port, "/detokenize", R"({"tokens": [1]})", key).status, 401);
        EXPECT_EQ(http_get(port, "/health").status, 200);
    }
    EXPECT_EQ(http_get(port, "/v1/models", "sekrit").status, 200);
    EXPECT_EQ(http_get(port, "/metrics", "sekrit").status, 200);
    EXPECT_EQ(http_post(port, "/v1/completions", cmpl, "sekrit").status, 200);
    httplib::Client cli("127.0.0.1", port);
    auto x = cli.Get("/v1/models", {{"X-Api-Key", "sekrit"}});
    ASSERT_TRUE(x);
    EXPECT_EQ(x->status, 200);
    EXPECT_EQ(s.stop(), 0);
}

TEST(ServerE2EOptions, ChatTemplateOverrideAndDefaults) {
    ServerProcess s({"-m", kModel, "-c", "512", "-t", "1", "--chat-template", "chatml"});
    ASSERT_TRUE(s.ok()) << s.log();
    EXPECT_TRUE(contains(s.log(), "chat template 'chatml' (--chat-template)")) << s.log();
    EXPECT_TRUE(contains(s.log(), "listening on http://127.0.0.1:")) << "binds to loopback";
    const HttpReply p = http_get(s.port(), "/props");
    ASSERT_EQ(p.status, 200);
    EXPECT_EQ(p.j()["chat_template"], "chatml");
    EXPECT_EQ(p.j()["total_slots"], 1);
    EXPECT_EQ(p.j()["default_generation_settings"]["n_ctx"], 512);
    // The chatml prompt: its markers are special tokens of chatml models, plain text for stories260K.
    const HttpReply r = http_post(s.port(), "/v1/chat/completions", chat_body("Hi", 4).dump());
    ASSERT_EQ(r.status, 200) << r.body;
    const HttpReply tok = http_post(s.port(), "/tokenize",
                                    json({{"content", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"},
                                          {"add_special", true}}).dump());
    EXPECT_EQ(r.j()["usage"]["prompt_tokens"], tok.j()["tokens"].size());
    EXPECT_EQ(http_get(s.port(), "/metrics").status, 501);
    EXPECT_EQ(s.stop(), 0);  // SIGTERM: a clean exit

    const RunResult bad = run_process(EMBER_SERVER_BIN, {"-m", kModel, "--chat-template", "nope"});
    EXPECT_EQ(bad.rc, 1);
    EXPECT_TRUE(contains(bad.err, "--chat-template: invalid value 'nope'")) << bad.err;
    const RunResult vram = run_process(EMBER_SERVER_BIN, {"-m", kModel, "--vram-budget", "-1"});
    EXPECT_EQ(vram.rc, 1);
    EXPECT_TRUE(contains(vram.err, "--vram-budget")) << vram.err;
    const RunResult missing = run_process(EMBER_SERVER_BIN, {"-m", "/nonexistent.gguf", "--port", "0"});
    EXPECT_EQ(missing.rc, 1);
    EXPECT_TRUE(contains(missing.err, "/nonexistent.gguf")) << missing.err;
}

// --version and --help print and exit 0 without a model, as in the other programs.
TEST(ServerE2EOptions, PrintsVersionAndHelp) {
    const RunResult v = run_process(EMBER_SERVER_BIN, {"--version"});
    EXPECT_EQ(v.rc, 0) << v.err;
    EXPECT_TRUE(contains(v.out, "ember 0.1.0 (cpu: ")) << v.out;
    const RunResult h = run_process(EMBER_SERVER_BIN, {"--help"});
    EXPECT_EQ(h.rc, 0) << h.err;
    EXPECT_TRUE(contains(h.out, "--version")) << h.out;
    EXPECT_TRUE(contains(h.out, "--api-key")) << h.out;
}

TEST(ServerE2EOptions, FullQueueGets503AndAHungUpStreamFreesItsSlot) {
    ServerProcess s({"-m", kModel, "-np", "1", "--max-queue", "0", "-c", "8192", "-t", "1", "--metrics"});
    ASSERT_TRUE(s.ok()) << s.log();
    const int port = s.port();
    std::atomic<int> events{0};
    std::atomic<bool> hang_up{false};
    std::thread streamer([&] {
        const json body = {{"prompt", "Once upon a time"}, {"n_predict", 8000}, {"ignore_eos", true},
                           {"temperature", 0}, {"stream", true}};
        http_stream(port, "/completion", body.dump(), [&](const std::string&) {
            events++;
            return !hang_up;
        });
    });
    const auto t0 = std::chrono::steady_clock::now();
    while (events < 2 && seconds_since(t0) < 20) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ASSERT_GE(events.load(), 2);

    // The only slot is generating and no request may wait: 503 with a clear body, and the server goes on.
    const HttpReply busy = http_post(port, "/v1/completions", json({{"prompt", "Hi"}, {"max_tokens", 4}}).dump());
    EXPECT_EQ(busy.status, 503) << busy.body;
    EXPECT_EQ(busy.j()["error"]["type"], "unavailable_error");
    EXPECT_TRUE(contains(busy.j()["error"]["message"], "busy")) << busy.body;
    EXPECT_EQ(header(busy, "Retry-After"), "1");
    EXPECT_EQ(http_get(port, "/health").status, 200);

    // The client hangs up: its slot is free long before 8000 tokens could have been generated.
    hang_up = true;
    streamer.join();
    const auto t1 = std::chrono::steady_clock::now();
    HttpReply next;
    while (seconds_since(t1) < 5) {
        next = http_post(port, "/v1/completions", json({{"prompt", "Hi"}, {"max_tokens", 4}}).dump());
        if (next.status != 503) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    const double freed_s = seconds_since(t1);
    EXPECT_EQ(next.status, 200) << next.body;
    EXPECT_LT(freed_s, 1.0);
    std::printf("slot freed %.1f ms after the client hung up\n", freed_s * 1e3);
    const std::string metrics = http_get(port, "/metrics").body;
    EXPECT_TRUE(contains(metrics, "\nember_requests_cancelled_total 1\n")) << metrics;
    EXPECT_TRUE(contains(metrics, "\nember_requests_rejected_total ")) << metrics;
    EXPECT_FALSE(contains(metrics, "\nember_requests_rejected_total 0\n")) << metrics;
    std::smatch sm;
    ASSERT_TRUE(std::regex_search(metrics, sm, std::regex(R"(\nember_tokens_predicted_total ([0-9]+)\n)")));
    EXPECT_LT(std::stoll(sm[1]), 4000) << "the hung-up request kept generating";
    EXPECT_EQ(s.stop(), 0);
}

namespace {

// Prompts written for this test, one per client.
const std::vector<std::string> kClientPrompts = {
    "Once upon a time",        "Tom had a red ball",         "The little cat was sad",   "One day, Lily went",
    "There was a big tree",    "Ben and Mia liked to play",  "The sun was hot",          "A small bird sat",
    "Sam wanted a new toy",    "The dog ran to the park",    "Mom made a cake",          "In the garden, a frog",
    "Anna found a shiny rock", "The boat was on the lake",   "Max was a happy dog",      "It was a rainy day",
};

struct LoadResult {
    int requests = 0, errors = 0, mismatches = 0;
    long long tokens = 0;
    double seconds = 0;
    std::string first_problem;
};

// n_clients threads, each streaming greedy completions (prompt (client + i) % 16) until `seconds` have passed;
// every text is checked against `alone`, what that prompt gives when it is the only request.
LoadResult run_clients(int port, int n_clients, double seconds, const std::vector<std::string>& alone, int max_tokens) {
    LoadResult total;
    std::mutex mu;
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> clients;
    for (int c = 0; c < n_clients; c++)
        clients.emplace_back([&, c] {
            LoadResult mine;
            for (int i = 0; i < 100000 && seconds_since(t0) < seconds; i++) {
                const size_t k = (size_t)(c + i) % kClientPrompts.size();
                const Streamed s =
                    stream(port, "/v1/completions",
                           {{"prompt", kClientPrompts[k]}, {"max_tokens", max_tokens}, {"temperature", 0}});
                mine.requests++;
                if (s.status != 200 || !s.done) {
                    mine.errors++;
                    if (mine.first_problem.empty())
                        mine.first_problem = "status " + std::to_string(s.status) + " " + s.last.dump();
                    continue;
                }
                if (s.text != alone[k]) {
                    mine.mismatches++;
                    if (mine.first_problem.empty())
                        mine.first_problem = "prompt '" + kClientPrompts[k] + "' gave '" + s.text + "'";
                }
                mine.tokens += s.last["usage"]["completion_tokens"].get<long long>();
            }
            std::lock_guard<std::mutex> lk(mu);
            total.requests += mine.requests;
            total.errors += mine.errors;
            total.mismatches += mine.mismatches;
            total.tokens += mine.tokens;
            if (total.first_problem.empty()) total.first_problem = mine.first_problem;
        });
    for (std::thread& t : clients) t.join();
    total.seconds = seconds_since(t0);
    return total;
}

// The texts each prompt gives alone, one request at a time.
std::vector<std::string> solo_texts(int port, int max_tokens) {
    std::vector<std::string> out;
    for (const std::string& p : kClientPrompts) {
        const HttpReply r = http_post(port, "/v1/completions",
                                      json({{"prompt", p}, {"max_tokens", max_tokens}, {"temperature", 0}}).dump());
        EXPECT_EQ(r.status, 200) << r.body;
        out.push_back(r.status == 200 ? r.j()["choices"][0]["text"].get<std::string>() : "");
    }
    return out;
}

double env_seconds(const char* name, double dflt) {
    const char* v = std::getenv(name);
    return v && *v ? std::atof(v) : dflt;
}

}  // namespace

TEST(ServerE2ELoad, SixteenClientsStreamingAtOnceGetTheirSoloText) {
    const int max_tokens = 48;
    const double soak_s = env_seconds("EMBER_SERVER_SOAK_S", 30);
    LoadResult np8, np1;
    {
        ServerProcess s({"-m", kModel, "-np", "8", "-c", "4096", "-t", "1", "--metrics"});
        ASSERT_TRUE(s.ok()) << s.log();
        const std::vector<std::string> alone = solo_texts(s.port(), max_tokens);
        np8 = run_clients(s.port(), 16, soak_s, alone, max_tokens);
        EXPECT_EQ(np8.errors, 0) << np8.first_problem;
        EXPECT_EQ(np8.mismatches, 0) << np8.first_problem;
        EXPECT_GT(np8.requests, 16);
        const std::string metrics = http_get(s.port(), "/metrics").body;
        std::smatch steps, slots;
        ASSERT_TRUE(std::regex_search(metrics, steps, std::regex(R"(\nember_decode_steps_total ([0-9]+)\n)")));
        ASSERT_TRUE(std::regex_search(metrics, slots, std::regex(R"(\nember_decode_step_slots_total ([0-9]+)\n)")));
        const double mean_batch = std::stod(slots[1]) / std::stod(steps[1]);
        EXPECT_GT(mean_batch, 2.0) << "16 clients on 8 slots must decode together";
        std::printf("-np 8: mean batch %.2f slots per step\n", mean_batch);
        EXPECT_EQ(s.stop(), 0);
    }
    {
        ServerProcess s({"-m", kModel, "-np", "1", "-c", "512", "-t", "1"});
        ASSERT_TRUE(s.ok()) << s.log();
        const std::vector<std::string> alone = solo_texts(s.port(), max_tokens);
        np1 = run_clients(s.port(), 16, env_seconds("EMBER_SERVER_NP1_S", 10), alone, max_tokens);
        EXPECT_EQ(np1.errors, 0) << np1.first_problem;
        EXPECT_EQ(np1.mismatches, 0) << np1.first_problem;
        EXPECT_EQ(s.stop(), 0);
    }
    auto report = [](const char* name, const LoadResult& r) {
        std::printf("%s: 16 streaming clients, %d requests, %lld tokens in %.1f s: %.0f tokens/s aggregate\n", name,
                    r.requests, r.tokens, r.seconds, r.tokens / r.seconds);
    };
    report("-np 8", np8);
    report("-np 1", np1);
    RecordProperty("np8_tokens_per_second", std::to_string(np8.tokens / np8.seconds));
    RecordProperty("np1_tokens_per_second", std::to_string(np1.tokens / np1.seconds));
}

// The routes in-process, as main.cpp wires them, before and after the model is there.
TEST(ServerRoutes, HealthIs503WhileTheModelLoads) {
    ember::ServerState st;
    httplib::Server http;
    ember::server_routes(http, st);
    const int port = http.bind_to_any_port("127.0.0.1");
    ASSERT_GT(port, 0);
    std::thread listener([&] { http.listen_after_bind(); });
    while (!http.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));

    const HttpReply loading = http_get(port, "/health");
    EXPECT_EQ(loading.status, 503);
    EXPECT_EQ(loading.j()["error"]["message"], "Loading model");
    EXPECT_EQ(loading.j()["error"]["type"], "unavailable_error");
    EXPECT_EQ(http_get(port, "/v1/models").status, 503);
    EXPECT_EQ(http_post(port, "/v1/completions", R"({"prompt": "Hi"})").status, 503);

    ember::ModelParams mp;
    mp.path = kModel;
    st.model = ember::Model::load(mp);
    ember::SlotServerParams sp;
    sp.session.n_ctx = 256;
    sp.session.n_threads = 1;
    st.slots = std::make_unique<ember::SlotServer>(*st.model, sp);
    st.model_id = "stories";
    st.template_name = "plain";
    st.ready = true;
    EXPECT_EQ(http_get(port, "/health").status, 200);
    const HttpReply m = http_get(port, "/v1/models");
    EXPECT_EQ(m.status, 200);
    EXPECT_EQ(m.j()["data"][0]["id"], "stories");
    const HttpReply r = http_post(port, "/v1/completions", R"({"prompt": "Once upon a time", "max_tokens": 3})");
    EXPECT_EQ(r.status, 200) << r.body;
    http.stop();
    listener.join();
}
