#include <cstdio>
#include <exception>

#include "commands.h"
#include "lockstep/error.h"

int main(int argc, char** argv) {
  CLI::App app{"lockstep: multi-rank inference that cannot hang silently, strand a peer, "
               "drift apart or emit stale work"};
  app.require_subcommand(1);
  lockstep::cli::register_run(app);
  lockstep::cli::register_launch(app);
  lockstep::cli::register_doctor(app);
  lockstep::cli::register_trace(app);
  lockstep::cli::register_bench(app);
  lockstep::cli::register_sim(app);
  lockstep::cli::register_selfcheck(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const lockstep::Error& e) {
    std::fprintf(stderr, "lockstep: %s\n", e.what());
    return lockstep::exit_code_for(e.code());
  }
  return 0;
}
