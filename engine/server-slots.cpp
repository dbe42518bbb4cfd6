#include "engine/server-slots.h"

#include <chrono>
#include <exception>
#include <utility>

namespace ember {

// ---- SlotTask ----

bool SlotTask::wait(std::vector<std::string>* pieces) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return !pieces_.empty() || ended_; });
    if (pieces_.empty()) return false;  // ended, and everything was taken
    for (std::string& p : pieces_) pieces->push_back(std::move(p));
    pieces_.clear();
    return true;
}

void SlotTask::cancel() {
    std::lock_guard<std::mutex> lk(mu_);
    cancelled_ = true;
}

bool SlotTask::cancelled() const {
    std::lock_guard<std::mutex> lk(mu_);
    return cancelled_;
}

GenerateResult SlotTask::result() const {
    std::lock_guard<std::mutex> lk(mu_);
    return result_;
}

std::string SlotTask::error() const {
    std::lock_guard<std::mutex> lk(mu_);
    return error_;
}

int SlotTask::slot() const {
    std::lock_guard<std::mutex> lk(mu_);
    return slot_;
}

void SlotTask::push(const std::string& piece) {
    {
        std::lock_guard<std::mutex> lk(mu_);
        pieces_.push_back(piece);
    }
    cv_.notify_all();
}

void SlotTask::end(const GenerateResult& result, const std::string& error) {
    {
        std::lock_guard<std::mutex> lk(mu_);
        result_ = result;
        error_ = error;
        ended_ = true;
    }
    cv_.notify_all();
}

// ---- SlotServer ----

SlotServer::SlotServer(const Model& model, const SlotServerParams& params) : model_(model), params_(params) {
    if (params.n_slots < 1) throw Error("slots: expected n_slots >= 1, found " + std::to_string(params.n_slots));
    if (params.n_queue < 0) throw Error("slots: expected n_queue >= 0, found " + std::to_string(params.n_queue));
    if (params.n_prompt_chunk < 1)
        throw Error("slots: expected n_prompt_chunk >= 1, found " + std::to_string(params.n_prompt_chunk));
    slots_.resize(params.n_slots);
    for (Slot& s : slots_) {
        s.session = std::make_unique<Session>(model, params.session);
        s.idle_sampler = std::make_unique<Sampler>(SamplerParams(), model.info().n_vocab);
        s.gen = std::make_unique<Generator>(model, *s.session, *s.idle_sampler);
    }
    metrics_.n_slots = params.n_slots;
    thread_ = std::thread([this] { run(); });
}

SlotServer::~SlotServer() { stop(); }

void SlotServer::stop() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

int SlotServer::n_ctx() const { return slots_.front().session->n_ctx(); }
int SlotServer::n_threads() const { return slots_.front().session->n_threads(); }

std::shared_ptr<SlotTask> SlotServer::submit(const SlotRequest& request) {
    const int n_vocab = model_.info().n_vocab;
    const std::vector<int32_t>& prompt = request.prompt;
    if (prompt.empty()) throw Error("prompt: empty (expected at least one token)");
    if ((int64_t)prompt.size() > n_ctx())
        throw Error("prompt: " + std::to_string(prompt.size()) + " tokens, more than a slot's context holds (n_ctx = " +
                    std::to_string(n_ctx()) + ")");
    for (size_t i = 0; i < prompt.size(); i++)
        if (prompt[i] < 0 || prompt[i] >= n_vocab)
            throw Error("prompt: token " + std::to_string(i) + " has id " + std::to_string(prompt[i]) +
                        ", outside the vocabulary [0, " + std::to_string(n_vocab) + ")");
    if (request.generate.n_predict < -1)
        throw Error("n_predict: expected -1 (no limit) or a count >= 0, found " +
                    std::to_string(request.generate.n_predict));
    for (const auto& [id, bias] : request.generate.logit_bias)
        if (id < 0 || id >= n_vocab)
            throw Error("logit_bias: token " + std::to_string(id) + " is outside the vocabulary [0, " +
                        std::to_string(n_vocab) + ")");
    auto task = std::make_shared<SlotTask>();
    task->sampler_ = std::make_unique<Sampler>(request.sampler, n_vocab);  // throws on a bad parameter
    task->request_ = request;
    {
        std::lock_guard<std::mutex> lk(mu_);
        if (stop_) throw Error("the server is shutting down");
        if (n_busy_ + queue_.size() >= slots_.size() + (size_t)params_.n_queue) {
            metrics_.n_rejected++;
            return nullptr;
        }
        queue_.push_back(task);
    }
    cv_.notify_all();
    return task;
}

SlotMetrics SlotServer::metrics() const {
    std::lock_guard<std::mutex> lk(mu_);
    SlotMetrics m = metrics_;
    m.n_busy = n_busy_;
    m.n_queued = (int)queue_.size();
    return m;
}

int SlotServer::pick_slot(const std::vector<int32_t>& prompt) const {
    int best = -1;
    size_t best_len = 0;
    for (size_t i = 0; i < slots_.size(); i++) {
        if (slots_[i].task) continue;
        const std::vector<int32_t> cached = slots_[i].gen->tokens();
        size_t n = 0;
        while (n < cached.size() && n < prompt.size() && cached[n] == prompt[n]) n++;
        if (best < 0 || n > best_len) {
            best = (int)i;
            best_len = n;
        }
    }
    return best;
}

void SlotServer::start_task(int slot_id, std::shared_ptr<SlotTask> task) {
    Slot& slot = slots_[slot_id];
    {
        std::lock_guard<std::mutex> lk(task->mu_);
        task->slot_ = slot_id;
    }
    slot.gen->set_sampler(*task->sampler_);
    SlotTask* t = task.get();  // outlives the generation: slot.task holds it until end_task
    try {
        slot.gen->start(t->request_.prompt, t->request_.generate, [t](const std::string& piece) {
            t->push(piece);
            return !t->cancelled();
        });
    } catch (const std::exception& e) {
        end_task(slot, GenerateResult(), e.what());
    }
}

void SlotServer::end_task(Slot& slot, const GenerateResult& result, const std::string& error) {
    std::shared_ptr<SlotTask> task = std::move(slot.task);
    slot.task.reset();
    slot.gen->set_sampler(*slot.idle_sampler);  // the task's sampler goes with the task
    {
        std::lock_guard<std::mutex> lk(mu_);
        n_busy_--;
        metrics_.n_requests++;
        if (!error.empty()) metrics_.n_failed++;
        else if (result.finish == FinishReason::FINISH_CANCELLED) metrics_.n_cancelled++;
        const GenerateTimings& t = result.timings;
        metrics_.n_prompt_tokens += t.n_prompt_eval;
        metrics_.n_prompt_cached += t.n_cached;
        metrics_.n_generated += t.n_generated;
        metrics_.prompt_seconds += t.prompt_ms / 1000.0;
        metrics_.generate_seconds += t.generate_ms() / 1000.0;
    }
    task->end(result, error);
}

void SlotServer::step() {
    items_.clear();
    stepping_.clear();
    for (size_t i = 0; i < slots_.size(); i++) {
        Slot& s = slots_[i];
        if (!s.task) continue;
        if (s.task->cancelled()) {  // the client went away: free the slot now
            s.gen->cancel();
            end_task(s, s.gen->result(), "");
            continue;
        }
        const GenerateStep st = s.gen->next(params_.n_prompt_chunk);
        items_.push_back({s.session.get(), st.tokens, st.n_tokens});
        stepping_.push_back((int)i);
    }
    if (items_.empty()) return;
    const auto t0 = std::chrono::steady_clock::now();
    try {
        sessions_eval(items_);
    } catch (const std::exception& e) {
        for (int i : stepping_) {
            slots_[i].gen->cancel();
            end_task(slots_[i], slots_[i].gen->result(), std::string("evaluation failed: ") + e.what());
        }
        return;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    uint64_t n_tokens = 0;
    for (const BatchEvalItem& it : items_) n_tokens += it.n_tokens;
    for (int i : stepping_) {
        Slot& s = slots_[i];
        try {
            s.gen->advance();  // samples, streams the text to the task, maybe ends the generation
        } catch (const std::exception& e) {
            s.gen->cancel();
            end_task(s, s.gen->result(), std::string("sampling failed: ") + e.what());
            continue;
        }
        if (s.gen->done()) end_task(s, s.gen->result(), "");
    }
    std::lock_guard<std::mutex> lk(mu_);
    metrics_.n_steps++;
    metrics_.n_step_slots += items_.size();
    metrics_.n_step_tokens += n_tokens;
    metrics_.step_seconds += seconds;
}

void SlotServer::run() {
    std::vector<std::pair<int, std::shared_ptr<SlotTask>>> starting;
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
        cv_.wait(lk, [&] { return stop_ || !queue_.empty() || n_busy_ > 0; });
        if (stop_) break;
        // Waiting requests take the free slots, in order of arrival.
        starting.clear();
        while (!queue_.empty()) {
            std::shared_ptr<SlotTask> task = queue_.front();
            if (task->cancelled()) {  // gone before it got a slot
                queue_.pop_front();
                metrics_.n_requests++;
                metrics_.n_cancelled++;
                GenerateResult r;
                r.finish = FinishReason::FINISH_CANCELLED;
                task->end(r, "");
                continue;
            }
            const int id = pick_slot(task->request_.prompt);
            if (id < 0) break;
            queue_.pop_front();
            slots_[id].task = task;
            n_busy_++;
            starting.emplace_back(id, std::move(task));
        }
        lk.unlock();
        for (auto& [id, task] : starting) start_task(id, std::move(task));
        step();
        lk.lock();
    }
    lk.unlock();
    const std::string bye = "the server is shutting down";
    for (Slot& s : slots_)
        if (s.task) {
            s.gen->cancel();
            end_task(s, s.gen->result(), bye);
        }
    lk.lock();
    for (const std::shared_ptr<SlotTask>& task : queue_) task->end(GenerateResult(), bye);
    queue_.clear();
}

}  // namespace ember
