// The generation side of ember-server: n_slots sequences over one Model, each a slot with its own Session (KV cache)
// and a Generator that keeps its prompt cache between requests. One scheduler thread steps every busy slot at
// once: a step takes one decode token, or a chunk of the prompt, from each busy slot and evaluates them all in one
// sessions_eval call (continuous batching, Orca, OSDI'22): a request joins at the step after a slot frees and leaves
// as soon as it ends. Requests beyond the slots wait in a bounded queue; past it they are refused. No HTTP here:
// apps/server turns requests into SlotRequest and SlotTask's text into responses.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/batch-eval.h"
#include "engine/ember.h"
#include "engine/generator.h"
#include "engine/sampler.h"

namespace ember {

struct SlotRequest {
    std::vector<int32_t> prompt;  // the whole text as tokens, BOS included
    GenerateParams generate;      // n_predict, stop strings, ignore_eos, logit_bias
    SamplerParams sampler;
};

struct SlotServerParams {
    int n_slots = 1;            // -np: sequences decoded together, each with its own KV cache
    int n_queue = 32;           // requests that may wait for a free slot; more are refused (submit gives nullptr)
    SessionParams session;      // every slot's session; n_ctx is one slot's context
    int n_prompt_chunk = 512;   // prompt tokens a slot evaluates per step, so a long prompt does not stall the others
};

// Counters since the server started, for /metrics.
struct SlotMetrics {
    int n_slots = 0;
    int n_busy = 0;                    // slots generating now
    int n_queued = 0;                  // requests waiting for a slot now
    uint64_t n_requests = 0;           // requests that ended (any finish reason, errors included)
    uint64_t n_rejected = 0;           // refused: every slot busy and the queue full
    uint64_t n_cancelled = 0;          // ended by SlotTask::cancel (client gone), queued or running
    uint64_t n_failed = 0;             // ended by an error
    uint64_t n_prompt_tokens = 0;      // prompt tokens evaluated (cached ones not counted)
    uint64_t n_prompt_cached = 0;      // prompt tokens reused from a slot's KV cache
    uint64_t n_generated = 0;          // tokens generated
    double prompt_seconds = 0;         // summed over requests: evaluating their prompts
    double generate_seconds = 0;       // summed over requests: producing their tokens (eval + sampling)
    uint64_t n_steps = 0;              // sessions_eval calls
    uint64_t n_step_slots = 0;         // slots in them, summed (n_step_slots / n_steps: mean batch size)
    uint64_t n_step_tokens = 0;        // tokens in them, summed
    double step_seconds = 0;           // time in sessions_eval
};

// One request's progress, shared by the scheduler (which appends text and ends it) and the front end (which waits
// for text and may cancel). Thread-safe.
class SlotTask {
public:
    // Waits until text is available or the generation has ended, and moves every piece produced since the last call
    // into *pieces (appended; each is what one token released, see engine/text-stream.h). Returns true while the
    // generation goes on; false once it has ended and nothing is left to take: result() and error() are final then.
    bool wait(std::vector<std::string>* pieces);
    // The client went away: the scheduler drops the request from the queue, or ends its generation at the next
    // step with FINISH_CANCELLED, freeing the slot.
    void cancel();
    bool cancelled() const;

    GenerateResult result() const;  // the generation (text, finish reason, timings); final once wait() gave false
    std::string error() const;      // why the generation failed; "" when it did not
    int slot() const;               // the slot it runs on, -1 while queued

private:
    friend class SlotServer;
    void push(const std::string& piece);
    void end(const GenerateResult& result, const std::string& error);

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::vector<std::string> pieces_;  // produced, not yet taken by wait()
    bool ended_ = false;
    bool cancelled_ = false;
    GenerateResult result_;
    std::string error_;
    int slot_ = -1;
    // Read by the scheduler only.
    SlotRequest request_;
    std::unique_ptr<Sampler> sampler_;
};

class SlotServer {
public:
    // Makes n_slots sessions and starts the scheduler thread. Throws ember::Error on n_slots < 1, n_queue < 0,
    // n_prompt_chunk < 1 or bad session parameters.
    SlotServer(const Model& model, const SlotServerParams& params);
    ~SlotServer();  // stop()
    // Stops the scheduler: requests still queued or running end with an error ("the server is shutting down"),
    // later submits throw. Idempotent.
    void stop();
    SlotServer(const SlotServer&) = delete;
    SlotServer& operator=(const SlotServer&) = delete;

    // Queues a request; a free slot takes it at the next step, preferring the slot whose KV cache shares the longest
    // prefix with its prompt. Returns nullptr when every slot is busy and n_queue requests already wait. Throws
    // ember::Error, naming the field, on an empty prompt, one longer than a slot's context, a token outside the
    // vocabulary, n_predict < -1 or a bad sampler parameter; nothing is queued then.
    std::shared_ptr<SlotTask> submit(const SlotRequest& request);

    SlotMetrics metrics() const;
    int n_slots() const { return (int)slots_.size(); }
    int n_ctx() const;      // one slot's context length
    int n_threads() const;  // one slot's threads
    const Model& model() const { return model_; }

private:
    struct Slot {
        std::unique_ptr<Session> session;
        std::unique_ptr<Sampler> idle_sampler;  // the generator's sampler while no task lends one
        std::unique_ptr<Generator> gen;
        std::shared_ptr<SlotTask> task;         // the request it runs; null when free
    };

    void run();                       // the scheduler thread
    void step();                      // one sessions_eval over every busy slot
    int pick_slot(const std::vector<int32_t>& prompt) const;  // a free slot; -1 when none
    void start_task(int slot_id, std::shared_ptr<SlotTask> task);
    // Ends the slot's task with `result` (and `error`, "" when none), frees the slot and counts it.
    void end_task(Slot& slot, const GenerateResult& result, const std::string& error);

    const Model& model_;
    SlotServerParams params_;
    std::vector<Slot> slots_;
    std::vector<BatchEvalItem> items_;  // the step being built (scheduler thread only)
    std::vector<int> stepping_;         // items_[i] is slot stepping_[i]

    mutable std::mutex mu_;  // guards the queue, the counters and stop_
    std::condition_variable cv_;
    std::deque<std::shared_ptr<SlotTask>> queue_;
    int n_busy_ = 0;
    bool stop_ = false;
    SlotMetrics metrics_;
    std::thread thread_;
};

}  // namespace ember
