#pragma once
// One DQN update captured into a CUDA graph and replayed (CUDA backend only).
//
// A Nature-DQN update at batch 32 is about 1.8 GFLOP: tens of microseconds
// of math on an H100 against some 60 kernel launches, so launch overhead
// dominates. Dqn<cuda>::update already runs without a host synchronisation;
// capturing it once turns the launches into one cudaGraphLaunch.
//
// What a replay reuses: every device pointer of the capture, so the batch
// must be refilled in place (same ReplayBatch tensors: DeviceReplayMemory's
// sample() writes into them, or upload into them) and the network, optimizer
// and batch size must not change. What changes per step is Adam's bias
// correction, a kernel argument: replay() rewrites that one node's
// parameters before each launch. The optimizer's step count stays right;
// Dqn::updates() does not count replays.
#include <cstring>
#include <vector>

#include <qrl/backend/cuda.hpp>
#include <qrl/rl/dqn.hpp>

namespace qrl::rl {

class DqnUpdateGraph {
 public:
  // Runs one real update (convolution plans, buffers, parameter tables are
  // made outside the capture), then captures a second one without running it.
  DqnUpdateGraph(Context<cuda>& ctx, Dqn<cuda>& agent, const ReplayBatch<cuda>& batch) : ctx_(&ctx), agent_(&agent) {
    agent.update(batch);
    const std::int64_t steps = agent.optimizer().steps();
    cuda_detail::check(cudaStreamBeginCapture(ctx.stream(), cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    try {
      agent.update(batch);
    } catch (...) {
      cudaGraph_t broken = nullptr;
      cudaStreamEndCapture(ctx.stream(), &broken);
      if (broken) cudaGraphDestroy(broken);
      throw;
    }
    cuda_detail::check(cudaStreamEndCapture(ctx.stream(), &graph_), "cudaStreamEndCapture");
    agent.optimizer().set_steps(steps);  // the captured update has not run
    find_adam_node();
    cuda_detail::check(cudaGraphInstantiate(&exec_, graph_, 0), "cudaGraphInstantiate");
  }
  ~DqnUpdateGraph() {
    if (exec_) cudaGraphExecDestroy(exec_);
    if (graph_) cudaGraphDestroy(graph_);
  }
  DqnUpdateGraph(const DqnUpdateGraph&) = delete;
  DqnUpdateGraph& operator=(const DqnUpdateGraph&) = delete;

  // Enqueues one update on the context's stream; does not wait.
  void replay() {
    auto& optimizer = agent_->optimizer();
    const std::int64_t step = optimizer.steps() + 1;
    kernels::AdamUpdate update = optimizer.update_for_step(step);
    cudaKernelNodeParams params = adam_params_;
    std::vector<void*> args(adam_args_);
    args[1] = &update;
    params.kernelParams = args.data();
    cuda_detail::check(cudaGraphExecKernelNodeSetParams(exec_, adam_node_, &params), "cudaGraphExecKernelNodeSetParams");
    cuda_detail::check(cudaGraphLaunch(exec_, ctx_->stream()), "cudaGraphLaunch");
    optimizer.set_steps(step);
  }

  std::size_t node_count() const {
    std::size_t count = 0;
    cudaGraphGetNodes(graph_, nullptr, &count);
    return count;
  }

 private:
  // The Adam kernel is (table, AdamUpdate, grad_scale); keep the pointers
  // of its captured arguments and swap the AdamUpdate at each replay.
  void find_adam_node() {
    std::size_t count = 0;
    cuda_detail::check(cudaGraphGetNodes(graph_, nullptr, &count), "cudaGraphGetNodes");
    std::vector<cudaGraphNode_t> nodes(count);
    cuda_detail::check(cudaGraphGetNodes(graph_, nodes.data(), &count), "cudaGraphGetNodes");
    for (auto node : nodes) {
      cudaGraphNodeType type{};
      cuda_detail::check(cudaGraphNodeGetType(node, &type), "cudaGraphNodeGetType");
      if (type != cudaGraphNodeTypeKernel) continue;
      cudaKernelNodeParams params{};
      cuda_detail::check(cudaGraphKernelNodeGetParams(node, &params), "cudaGraphKernelNodeGetParams");
      if (!is_adam(params.func)) continue;
      require(adam_node_ == nullptr, "DqnUpdateGraph: the captured update holds two Adam launches; one optimizer "
                                     "step per update is expected");
      adam_node_ = node;
      adam_params_ = params;
      std::memcpy(&table_, params.kernelParams[0], sizeof(table_));
      std::memcpy(&grad_scale_, params.kernelParams[2], sizeof(grad_scale_));
    }
    require(adam_node_ != nullptr, "DqnUpdateGraph: no Adam kernel in the captured update (was it run with the "
                                   "CUDA backend's optimizer?)");
    adam_args_ = {&table_, nullptr, &grad_scale_};
    adam_params_.kernelParams = nullptr;
    adam_params_.extra = nullptr;
  }

  // A captured kernel launch names the kernel by its host-side entry point;
  // some runtime versions give the driver's function handle instead, so
  // both are accepted.
  static bool is_adam(const void* func) {
    const void* entry = kernels::adam_kernel_entry();
    if (func == entry) return true;
    cudaFunction_t handle = nullptr;
    if (cudaGetFuncBySymbol(&handle, entry) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return func == reinterpret_cast<const void*>(handle);
  }

  Context<cuda>* ctx_;
  Dqn<cuda>* agent_;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
  cudaGraphNode_t adam_node_ = nullptr;
  cudaKernelNodeParams adam_params_{};
  const kernels::DeviceParameter* table_ = nullptr;
  const float* grad_scale_ = nullptr;
  std::vector<void*> adam_args_;
};

}  // namespace qrl::rl
