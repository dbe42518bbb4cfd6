// Command-line parsing shared by the apps (header-only; apps/CMakeLists.txt makes executables only of folders).
// llama.cpp style: "-flag VALUE" and "--long-flag VALUE", values may start with '-' ("-n -1"). Any unknown flag
// or bad value throws ember::Error naming the flag and the value; app_run turns it into "error: ..." and exit 1.
#pragma once
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <limits>
#include <set>
#include <string>
#include <vector>

#if defined(__linux__)
#include <unistd.h>
#endif

#include "engine/cpu-info.h"
#include "engine/ember.h"
#include "engine/error.h"

namespace ember {

class ArgParser {
public:
    explicit ArgParser(std::string program, std::string summary)
        : program_(std::move(program)), summary_(std::move(summary)) {}

    // A switch: sets *dst to `value` when given.
    void add_flag(std::initializer_list<const char*> names, bool* dst, const char* help, bool value = true) {
        add(names, "", help, "", [dst, value](const std::string&, const std::string&) { *dst = value; });
    }
    void add_int(std::initializer_list<const char*> names, int* dst, const char* help) {
        add(names, "N", help, std::to_string(*dst), [dst](const std::string& flag, const std::string& v) {
            const long long x = parse_integer(flag, v);
            if (x < std::numeric_limits<int>::min() || x > std::numeric_limits<int>::max())
                throw Error(flag + ": value '" + v + "' is out of range for a 32-bit integer");
            *dst = (int)x;
        });
    }
    void add_i64(std::initializer_list<const char*> names, int64_t* dst, const char* help) {
        add(names, "N", help, std::to_string(*dst),
            [dst](const std::string& flag, const std::string& v) { *dst = parse_integer(flag, v); });
    }
    void add_float(std::initializer_list<const char*> names, float* dst, const char* help) {
        add(names, "X", help, format_float(*dst),
            [dst](const std::string& flag, const std::string& v) { *dst = (float)parse_real(flag, v); });
    }
    void add_double(std::initializer_list<const char*> names, double* dst, const char* help) {
        add(names, "X", help, format_float(*dst),
            [dst](const std::string& flag, const std::string& v) { *dst = parse_real(flag, v); });
    }
    void add_string(std::initializer_list<const char*> names, std::string* dst, const char* meta, const char* help) {
        add(names, meta, help, dst->empty() ? "" : "'" + *dst + "'",
            [dst](const std::string&, const std::string& v) { *dst = v; });
    }
    // The default --help shows for the option named `name`, for values worked out at run time (a sentinel such as -1
    // would say nothing).
    void set_default_text(const std::string& name, std::string text) {
        for (Option& o : options_)
            for (const std::string& n : o.names)
                if (n == name) o.default_text = text;
    }
    // A string restricted to `choices`.
    void add_choice(std::initializer_list<const char*> names, std::string* dst, std::vector<std::string> choices,
                    const char* help) {
        std::string meta;
        for (const std::string& c : choices) meta += (meta.empty() ? "" : "|") + c;
        add(names, meta, help, *dst, [dst, choices, meta](const std::string& flag, const std::string& v) {
            for (const std::string& c : choices)
                if (c == v) {
                    *dst = v;
                    return;
                }
            throw Error(flag + ": invalid value '" + v + "' (expected one of " + meta + ")");
        });
    }

    // Parses argv[1..]. Throws ember::Error naming the flag and value on any problem.
    void parse(int argc, char** argv) {
        for (int i = 1; i < argc; i++) {
            const std::string arg = argv[i];
            const Option* opt = find(arg);
            if (!opt) throw Error("unknown argument '" + arg + "' (see " + program_ + " --help)");
            std::string value;
            if (!opt->meta.empty()) {
                if (i + 1 >= argc) throw Error(arg + ": missing value (expected " + opt->meta + ")");
                value = argv[++i];
            }
            opt->set(arg, value);
            seen_.insert(opt->names.front());
        }
    }

    // Whether the option (any of its names) was given.
    bool seen(const std::string& name) const {
        const Option* opt = find(name);
        return opt && seen_.count(opt->names.front());
    }

    std::string usage() const {
        std::string out = "usage: " + program_ + " [options]\n" + summary_ + "\n\noptions:\n";
        for (const Option& o : options_) {
            std::string left = "  ";
            for (size_t i = 0; i < o.names.size(); i++) left += (i ? ", " : "") + o.names[i];
            if (!o.meta.empty()) left += " " + o.meta;
            if (left.size() < 32) left.resize(32, ' ');
            else left += "\n" + std::string(32, ' ');
            out += left + o.help;
            if (!o.default_text.empty()) out += " (default: " + o.default_text + ")";
            out += "\n";
        }
        return out;
    }

    static long long parse_integer(const std::string& flag, const std::string& v) {
        errno = 0;
        char* end = nullptr;
        const long long x = std::strtoll(v.c_str(), &end, 10);
        if (v.empty() || *end != '\0' || errno == ERANGE)
            throw Error(flag + ": invalid value '" + v + "' (expected an integer)");
        return x;
    }

    static double parse_real(const std::string& flag, const std::string& v) {
        errno = 0;
        char* end = nullptr;
        const double x = std::strtod(v.c_str(), &end);
        if (v.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(x))
            throw Error(flag + ": invalid value '" + v + "' (expected a finite number)");
        return x;
    }

private:
    struct Option {
        std::vector<std::string> names;
        std::string meta;          // value placeholder; "" for a switch
        std::string help;
        std::string default_text;  // shown in --help
        std::function<void(const std::string& flag, const std::string& value)> set;
    };

    static std::string format_float(double x) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", (double)x);
        return buf;
    }

    void add(std::initializer_list<const char*> names, std::string meta, const char* help, std::string default_text,
             std::function<void(const std::string&, const std::string&)> set) {
        Option o;
        for (const char* n : names) {
            if (find(n)) throw Error(program_ + ": option '" + n + "' registered twice");
            o.names.push_back(n);
        }
        o.meta = std::move(meta);
        o.help = help;
        o.default_text = std::move(default_text);
        o.set = std::move(set);
        options_.push_back(std::move(o));
    }

    const Option* find(const std::string& name) const {
        for (const Option& o : options_)
            for (const std::string& n : o.names)
                if (n == name) return &o;
        return nullptr;
    }

    std::string program_, summary_;
    std::vector<Option> options_;
    std::set<std::string> seen_;
};

// llama.cpp's prompt escapes (on by default there): \n \r \t \' \" \\ and \xHH; others are kept as written.
inline std::string args_unescape(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size(); i++) {
        if (s[i] != '\\' || i + 1 == s.size()) {
            out += s[i];
            continue;
        }
        const char c = s[++i];
        switch (c) {
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case '\'': out += '\''; break;
            case '"': out += '"'; break;
            case '\\': out += '\\'; break;
            case 'x':
                if (i + 2 < s.size() && std::isxdigit((unsigned char)s[i + 1]) &&
                    std::isxdigit((unsigned char)s[i + 2])) {
                    out += (char)std::strtol(s.substr(i + 1, 2).c_str(), nullptr, 16);
                    i += 2;
                    break;
                }
                out += "\\x";
                break;
            default: out += '\\'; out += c;
        }
    }
    return out;
}

// The switches every model app ends its options with, --version and -h/--help: registers them, parses argv, and
// prints the version or the usage (to stdout) when asked. Returns false when the app should then exit 0.
inline bool app_parse_args(ArgParser& args, int argc, char** argv) {
    bool help = false, version = false;
    args.add_flag({"--version"}, &version, "print the version and exit");
    args.add_flag({"-h", "--help"}, &help, "print this help and exit");
    args.parse(argc, argv);
    if (help) {
        std::fputs(args.usage().c_str(), stdout);
        return false;
    }
    if (version) {
        std::printf("%s\n", version_string().c_str());
        return false;
    }
    return true;
}

// Runs an app's body; an ember::Error (or any std::exception) prints "error: <message>" and gives exit code 1.
// OpenBLAS reads OPENBLAS_CORETYPE only when it loads: when it fell back to its generic kernels on this CPU (and the
// user set nothing), the program runs itself again with the fitting value, else it warns.
inline void app_fix_blas_kernels() {
    const char* advice = cpu_blas_coretype_advice();
    if (!*advice || std::getenv("OPENBLAS_CORETYPE")) return;
#if defined(__linux__)
    std::FILE* f = std::fopen("/proc/self/cmdline", "rb");
    if (f) {
        std::string all;
        char buf[4096];
        for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) all.append(buf, n);
        std::fclose(f);
        std::vector<std::string> args;
        for (size_t b = 0; b < all.size();) {
            const size_t e = all.find('\0', b);
            args.push_back(all.substr(b, e == std::string::npos ? std::string::npos : e - b));
            b = e == std::string::npos ? all.size() : e + 1;
        }
        std::vector<char*> argv;
        for (std::string& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        setenv("OPENBLAS_CORETYPE", advice, 1);
        std::fflush(nullptr);
        execv("/proc/self/exe", argv.data());
    }
#endif
    std::fprintf(stderr, "warning: OpenBLAS did not recognise this CPU and runs generic kernels; set OPENBLAS_CORETYPE=%s for "
                 "several times faster prompt processing\n", advice);
}

inline int app_run(const std::function<int()>& body) {
    app_fix_blas_kernels();
    try {
        return body();
    } catch (const Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
    }
    return 1;
}

}  // namespace ember
