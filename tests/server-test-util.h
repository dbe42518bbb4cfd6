// Test helpers for ember-server: the built server as a child process on a free loopback port, and a small HTTP client
// over cpp-httplib that also reads server-sent events.
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "tests/run-process.h"

namespace ember_test {

using json = nlohmann::json;

// ember-server started with `args` plus --host 127.0.0.1 --port 0; its stderr goes to a log file. The constructor
// waits until the log says the model is loaded (or the process died: then ok() is false and log() says why).
class ServerProcess {
public:
    explicit ServerProcess(const std::vector<std::string>& args, double wait_s = 30) {
        static int counter = 0;
        log_path_ = temp_path("server", std::to_string(counter++) + ".log");
        pid_ = ::fork();
        if (pid_ == 0) {
            std::vector<std::string> a = {EMBER_SERVER_BIN, "--host", "127.0.0.1", "--port", "0"};
            a.insert(a.end(), args.begin(), args.end());
            std::vector<char*> argv;
            for (std::string& s : a) argv.push_back(s.data());
            argv.push_back(nullptr);
            const int log_fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
            const int null_fd = ::open("/dev/null", O_RDWR);
            if (log_fd < 0 || null_fd < 0 || ::dup2(log_fd, 2) < 0 || ::dup2(null_fd, 1) < 0 || ::dup2(null_fd, 0) < 0)
                _exit(126);
            ::execv(argv[0], argv.data());
            _exit(127);
        }
        const auto t0 = std::chrono::steady_clock::now();
        const std::regex listening(R"(listening on http://127\.0\.0\.1:([0-9]+))");
        while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < wait_s) {
            const std::string text = log();
            std::smatch m;
            if (port_ == 0 && std::regex_search(text, m, listening)) port_ = std::stoi(m[1]);
            if (port_ != 0 && text.find("; ready") != std::string::npos) {
                ready_ = true;
                break;
            }
            if (!running()) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
    ~ServerProcess() {
        stop();
        std::remove(log_path_.c_str());
    }
    ServerProcess(const ServerProcess&) = delete;
    ServerProcess& operator=(const ServerProcess&) = delete;

    bool ok() const { return ready_; }
    int port() const { return port_; }
    std::string log() const { return slurp(log_path_); }
    bool running() {
        if (exited_) return false;
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            exited_ = true;
            rc_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        return !exited_;
    }
    // SIGTERM, then the exit code (-1: killed by a signal; SIGKILL after 10 s).
    int stop() {
        if (!running()) return rc_;
        ::kill(pid_, SIGTERM);
        for (int i = 0; i < 1000 && running(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
        if (running()) {
            ::kill(pid_, SIGKILL);
            int status = 0;
            ::waitpid(pid_, &status, 0);
            exited_ = true;
            rc_ = -1;
        }
        return rc_;
    }

private:
    pid_t pid_ = -1;
    std::string log_path_;
    int port_ = 0;
    bool ready_ = false;
    bool exited_ = false;
    int rc_ = -1;
};

struct HttpReply {
    int status = 0;  // 0: no reply (connection failed)
    std::string body;
    httplib::Headers headers;
    json j() const { return json::parse(body, nullptr, false); }  // discarded value when not JSON
};

// A reply header's value, "" when absent.
inline std::string header(const HttpReply& r, const std::string& name) {
    auto it = r.headers.find(name);
    return it == r.headers.end() ? "" : it->second;
}

inline httplib::Headers auth_headers(const std::string& key) {
    httplib::Headers h;
    if (!key.empty()) h.emplace("Authorization", "Bearer " + key);
    return h;
}

inline HttpReply http_get(int port, const std::string& path, const std::string& key = "") {
    httplib::Client cli("127.0.0.1", port);
    cli.set_read_timeout(60);
    HttpReply r;
    if (auto res = cli.Get(path.c_str(), auth_headers(key))) {
        r.status = res->status;
        r.body = res->body;
        r.headers = res->headers;
    }
    return r;
}

inline HttpReply http_post(int port, const std::string& path, const std::string& body, const std::string& key = "") {
    httplib::Client cli("127.0.0.1", port);
    cli.set_read_timeout(60);
    HttpReply r;
    if (auto res = cli.Post(path.c_str(), auth_headers(key), body, "application/json")) {
        r.status = res->status;
        r.body = res->body;
        r.headers = res->headers;
    }
    return r;
}

// A streamed POST: `on_event` gets each server-sent event's data ("[DONE]" included) as it arrives and returns false
// to hang up. Returns the status (0 when no reply).
inline int http_stream(int port, const std::string& path, const std::string& body,
                       const std::function<bool(const std::string& data)>& on_event, const std::string& key = "") {
    httplib::Client cli("127.0.0.1", port);
    cli.set_read_timeout(60);
    httplib::Request req;
    req.method = "POST";
    req.path = path;
    req.headers = auth_headers(key);
    req.body = body;
    req.set_header("Content-Type", "application/json");
    std::string buf;
    bool go_on = true;
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
        buf.append(data, n);
        for (size_t end; go_on && (end = buf.find("\n\n")) != std::string::npos;) {
            const std::string ev = buf.substr(0, end);
            buf.erase(0, end + 2);
            if (ev.compare(0, 6, "data: ") == 0) go_on = on_event(ev.substr(6));
        }
        return go_on;
    };
    httplib::Response res;
    httplib::Error err = httplib::Error::Success;
    const bool sent = cli.send(req, res, err);
    return sent || !go_on ? res.status : 0;
}

}  // namespace ember_test
