// Each subcommand of `lockstep` lives in its own cmd_<name>.cc and registers
// itself on the root app. A registered callback returns the process exit code
// through CLI11's callback by throwing CLI::RuntimeError(code) on failure.
#pragma once

#include <CLI/CLI.hpp>

namespace lockstep::cli {

void register_run(CLI::App& app);
void register_launch(CLI::App& app);
void register_doctor(CLI::App& app);
void register_trace(CLI::App& app);
void register_bench(CLI::App& app);
void register_sim(CLI::App& app);
void register_selfcheck(CLI::App& app);

}  // namespace lockstep::cli
