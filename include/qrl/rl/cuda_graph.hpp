#pragma once
// One DQN update captured into a CUDA graph and replayed (CUDA backend only).
//
// A Nature-DQN update at batch 32 is about 1.8 GFLOP: tens of microseconds
// of math on an H100 against some 60 kernel launches, so launch overhead
// dominates. Dqn<cuda>::update already runs without a host synchronisation;
// capturing it once turns the launches into one cudaGraphLaunch.
//
// Nothing in the graph changes from step to step: Adam's step count lives on
// the device (optim::Adam<cuda>), and the captured Adam launch advances it
// and derives the bias corrections itself, so replay() launches the graph as
// it was instantiated; no node is patched (cuBLAS and cuDNN nodes, whose
// parameters the runtime does not expose, are never touched).
//
// What a replay reuses: every device pointer of the capture, so the batch
// must be refilled in place (same ReplayBatch tensors: ReplayMemory<cuda>'s
// sample() gathers into them at the same size, or upload into them) and the network, optimizer
// and batch size must not change. The capture records every device buffer
// its operations touch; if one of them is freed afterwards (a Tensor grown
// past its capacity: a larger batch through the network, a resized batch
// tensor), replay() refuses with an error instead of reading freed memory.
// Build a new graph then. The cuDNN workspace never moves under a graph:
// the Context keeps replaced workspace blocks alive.
//
// Counts: the optimizer's steps() and the agent's updates() count each
// replay, not the capture; a checkpoint's set_steps() is honoured (the
// device count is set before the next replay).
#include <atomic>
#include <memory>
#include <type_traits>
#include <vector>

#include <qrl/backend/cuda.hpp>
#include <qrl/rl/dqn.hpp>

namespace qrl::rl {

class DqnUpdateGraph {
 public:
  // Runs one real update (convolution plans, buffers, parameter tables and
  // the device step count are made outside the capture), then captures a
  // second one without running it.
  DqnUpdateGraph(Context<cuda>& ctx, Dqn<cuda>& agent, const ReplayBatch<cuda>& batch) : ctx_(&ctx), agent_(&agent) {
    agent.update(batch);
    auto& optimizer = agent.optimizer();
    optimizer.sync_device_step(ctx);
    const std::int64_t steps = optimizer.steps();
    const std::int64_t updates = agent.updates();
    // The captured update does not run: the host counts go back to what the
    // device holds. set_steps() has the next replay set the device count
    // again, which it already equals.
    auto restore_counts = [&] {
      optimizer.set_steps(steps);
      agent.set_updates(updates);
    };
    ctx.begin_recording();
    const cudaError_t begun = cudaStreamBeginCapture(ctx.stream(), cudaStreamCaptureModeThreadLocal);
    if (begun != cudaSuccess) {
      (void)ctx.end_recording();
      cuda_detail::check(begun, "cudaStreamBeginCapture");
    }
    try {
      agent.update(batch);
    } catch (...) {
      cudaGraph_t broken = nullptr;
      cudaStreamEndCapture(ctx.stream(), &broken);
      if (broken) cudaGraphDestroy(broken);
      (void)cudaGetLastError();
      (void)ctx.end_recording();
      restore_counts();
      throw;
    }
    cudaGraph_t graph = nullptr;
    const cudaError_t ended = cudaStreamEndCapture(ctx.stream(), &graph);
    graph_.reset(graph);
    const std::vector<const void*> pointers = ctx.end_recording();
    restore_counts();
    cuda_detail::check(ended, "cudaStreamEndCapture");
    watch_ = std::make_unique<cuda_detail::AllocationWatch>(cuda_detail::allocations(), pointers);
    cudaGraphExec_t exec = nullptr;
    cuda_detail::check(cudaGraphInstantiate(&exec, graph_.get(), 0), "cudaGraphInstantiate");
    exec_.reset(exec);
  }
  DqnUpdateGraph(const DqnUpdateGraph&) = delete;
  DqnUpdateGraph& operator=(const DqnUpdateGraph&) = delete;

  // Enqueues one update on the context's stream; does not wait. Throws, and
  // launches nothing, once a buffer of the capture was freed.
  void replay() {
    require(!buffers_moved(),
            "DqnUpdateGraph::replay: a device buffer the captured update uses was freed since the capture (a larger "
            "batch through the network, a resized ReplayBatch or layer buffer): build a new DqnUpdateGraph");
    auto& optimizer = agent_->optimizer();
    optimizer.sync_device_step(*ctx_);  // after set_steps (a checkpoint load): the device count follows
    cuda_detail::check(cudaGraphLaunch(exec_.get(), ctx_->stream()), "cudaGraphLaunch");
    optimizer.count_replayed_step();
    agent_->set_updates(agent_->updates() + 1);
  }

  // Whether a buffer of the capture was freed (replay() would refuse).
  bool buffers_moved() const { return watch_->freed(); }
  // How many device allocations the capture uses.
  std::size_t watched_allocations() const { return watch_->allocations(); }

  std::size_t node_count() const {
    std::size_t count = 0;
    cudaGraphGetNodes(graph_.get(), nullptr, &count);
    return count;
  }

 private:
  struct GraphDestroy {
    void operator()(cudaGraph_t g) const noexcept { cudaGraphDestroy(g); }
  };
  struct ExecDestroy {
    void operator()(cudaGraphExec_t e) const noexcept { cudaGraphExecDestroy(e); }
  };

  Context<cuda>* ctx_;
  Dqn<cuda>* agent_;
  std::unique_ptr<std::remove_pointer_t<cudaGraph_t>, GraphDestroy> graph_;
  std::unique_ptr<cuda_detail::AllocationWatch> watch_;
  std::unique_ptr<std::remove_pointer_t<cudaGraphExec_t>, ExecDestroy> exec_;
};

}  // namespace qrl::rl
