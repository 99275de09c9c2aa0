#pragma once
// Everything of qrl's CPU side in one include, except <qrl/log/gif.hpp> and
// <qrl/log/record_video.hpp> (they need giflib) and <qrl/rl/checkpoint.hpp>
// (training checkpoints: the file layer, the manifest and every part's
// loader, which only a program that saves or resumes a run needs; include it
// there).
#include <qrl/backend/cpu.hpp>
#include <qrl/env/env.hpp>
#include <qrl/log/svg_plot.hpp>
#include <qrl/log/tensorboard.hpp>
#include <qrl/nn/heads.hpp>
#include <qrl/nn/loss.hpp>
#include <qrl/nn/models.hpp>
#include <qrl/nn/sequential.hpp>
#include <qrl/nn/serialize.hpp>
#include <qrl/optim/adam.hpp>
#include <qrl/rl/dqn.hpp>
#include <qrl/rl/epsilon_schedule.hpp>
#include <qrl/rl/frame_stack.hpp>
#include <qrl/rl/replay_memory.hpp>
#include <qrl/rl/trainer.hpp>
#include <qrl/tensor.hpp>
#include <qrl/version.hpp>
