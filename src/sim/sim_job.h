// What Stage 0 and the mesh of the simulated job agree on: frame context,
// envelope geometry, and the tiny "model" (bookkeeping only).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "lockstep/envelope.h"
#include "lockstep/store.h"
#include "sim/sim_scenario.h"

namespace lockstep::sim {

inline constexpr std::string_view kSimJobToken = "lockstep-sim";

// Frames bound to the job and its generation (generation 0 throughout under
// PlantedBug::kNoGenerationFence).
FrameContext sim_frame_context(const Scenario& scenario, int sender_rank, std::uint32_t generation);
FrameExpectations sim_frame_expectations(const Scenario& scenario, std::uint32_t generation);
// Whether Stage 0 may still emit: its generation is the launcher's current
// one (always, under PlantedBug::kNoGenerationFence).
bool generation_is_current(const Scenario& scenario, Store& job_store, std::uint32_t generation);
Geometry sim_geometry(const Scenario& scenario);

// The model's output for `latents` after `generator_calls` calls: each value
// plus the call count. Stage 0's oracle predicts it; the mesh computes it.
std::vector<float> sim_model_output(std::span<const float> latents, std::uint32_t generator_calls);
std::uint64_t digest_floats(std::span<const float> values);

}  // namespace lockstep::sim
