// PLACEHOLDER until its layer lands; replaced by the owner of `lockstep trace`.
#include "commands.h"
#include "lockstep/error.h"

namespace lockstep::cli {

void register_trace(CLI::App& app) {
  auto* cmd = app.add_subcommand("trace", "(not built yet)");
  cmd->callback([] { throw Error(ErrorCode::kInvalidArgument, "'lockstep trace' is not built yet"); });
}

}  // namespace lockstep::cli
