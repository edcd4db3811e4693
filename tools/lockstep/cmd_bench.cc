// PLACEHOLDER until its layer lands; replaced by the owner of `lockstep bench`.
#include "commands.h"
#include "lockstep/error.h"

namespace lockstep::cli {

void register_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "(not built yet)");
  cmd->callback([] { throw Error(ErrorCode::kInvalidArgument, "'lockstep bench' is not built yet"); });
}

}  // namespace lockstep::cli
