// Test helper for the end-to-end tests: runs a built binary through the shell and captures its exit code, stdout
// and stderr; temporary paths and whole-file reads.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace ember_test {

struct RunResult {
    int rc = -1;  // exit code, -1 when the process did not exit normally (killed by a signal)
    std::string out, err;
};

// The whole file; "" when it cannot be read.
inline std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// `s` as one single-quoted shell word.
inline std::string shell_quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

// $TMPDIR/ember-<tag>-<pid>-<name> (/tmp without TMPDIR): per process, so parallel ctest runs do not collide.
inline std::string temp_path(const std::string& tag, const std::string& name) {
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir ? dir : "/tmp") + "/ember-" + tag + "-" + std::to_string(::getpid()) + "-" + name;
}

// Runs `binary` with `args` (each shell-quoted), stdin read from `input`, after `prefix` (shell commands run first in
// the same shell, e.g. "ulimit -f 64; "). Captures the exit code, stdout and stderr.
inline RunResult run_process(const std::string& binary, const std::vector<std::string>& args,
                             const std::string& input = "", const std::string& prefix = "") {
    const std::string in = temp_path("run", "stdin"), out = temp_path("run", "stdout"),
                      err = temp_path("run", "stderr");
    std::ofstream(in, std::ios::binary) << input;
    std::string cmd = prefix + "exec " + shell_quote(binary);
    for (const std::string& a : args) cmd += " " + shell_quote(a);
    cmd += " <" + shell_quote(in) + " >" + shell_quote(out) + " 2>" + shell_quote(err);
    const int status = std::system(cmd.c_str());
    RunResult r;
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    std::remove(in.c_str());
    std::remove(out.c_str());
    std::remove(err.c_str());
    return r;
}

}  // namespace ember_test
