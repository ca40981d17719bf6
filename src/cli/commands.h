// The sub-commands of the certcustody executable. Each loads the
// configuration, calls one service and prints its result or named error.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <optional>
#include <string>

#include "common/error.h"

namespace certcustody::cli {

struct Globals {
  std::optional<std::string> config;
};

// A registered sub-command's action, run after argv is parsed.
using Action = std::function<Status()>;

void add_token_commands(CLI::App& app, const Globals& g, Action& action);
void add_ra_commands(CLI::App& app, const Globals& g, Action& action);
void add_kek_commands(CLI::App& app, const Globals& g, Action& action);
void add_ca_commands(CLI::App& app, const Globals& g, Action& action);
void add_policy_commands(CLI::App& app, const Globals& g, Action& action);
void add_pipeline_commands(CLI::App& app, const Globals& g, Action& action);
void add_audit_commands(CLI::App& app, const Globals& g, Action& action);

}  // namespace certcustody::cli
