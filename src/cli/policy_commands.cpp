#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/commands.h"
#include "cli/context.h"
#include "config/profiles.h"
#include "policy.h"

namespace certcustody::cli {
namespace {

struct CheckOptions {
  std::string profile;
  std::string request;
  std::string template_policy;
};

Result<std::string> read_text(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Error{"cli.input_unreadable", std::string("cannot read the ") + what + " file " + path,
                 "check the path and permissions"};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status policy_check(const Globals& g, const CheckOptions& o) {
  CC_TRY_ASSIGN(std::string path, resolve_config_path(g.config));
  CC_TRY_ASSIGN(auto profiles, load_profiles(path));
  const policy::Profile* profile = nullptr;
  for (const auto& p : profiles)
    if (p.name == o.profile) profile = &p;
  if (profile == nullptr)
    return Error{"policy.profile_unknown", path + " has no [profile." + o.profile + "]",
                 "add the profile (see hsm-config/certcustody.toml.example) or use a configured one"};
  CC_TRY_ASSIGN(std::string request_text, read_text(o.request, "request"));
  CC_TRY_ASSIGN(policy::RequestAttributes request, policy::parse_request_json(request_text));
  policy::TemplatePolicy tpl;
  if (!o.template_policy.empty()) {
    CC_TRY_ASSIGN(std::string tpl_text, read_text(o.template_policy, "template policy"));
    CC_TRY_ASSIGN(tpl, policy::parse_template_policy_json(tpl_text));
  }
  CC_TRY_ASSIGN(policy::RequestSpec spec, policy::evaluate(*profile, request, tpl));
  std::printf("profile: %s (CA %s, template %s)\n", profile->name.c_str(), profile->ca.c_str(),
              profile->template_id.c_str());
  std::printf("subject=%s\n", policy::subject_text(spec.subject.get()).c_str());
  std::printf("X509v3 Subject Alternative Name: %s\n", policy::san_text(spec.san.get()).c_str());
  std::printf("key: %s, validity: %u days", key_type_name(spec.key_type).c_str(), spec.validity_days);
  for (std::size_t i = 0; i < spec.ekus.size(); ++i)
    std::printf("%s%s", i == 0 ? ", EKU: " : ", ", spec.ekus[i].c_str());
  std::printf("\n");
  return {};
}

}  // namespace

void add_policy_commands(CLI::App& app, const Globals& g, Action& action) {
  static CheckOptions o;
  CLI::App* policy = app.add_subcommand("policy", "the Subject/SAN policy of the certificate profiles");
  policy->require_subcommand(1);
  CLI::App* check = policy->add_subcommand("check", "resolve a request's Subject and SAN under a profile");
  check->add_option("--profile", o.profile, "name of a [profile.<name>] section")->required();
  check->add_option("--request", o.request, "request JSON (docs/request-schema.md)")->required();
  check->add_option("--template-policy", o.template_policy, "the CA template's policy as JSON (supported/fixed)");
  check->callback([&g, &action] { action = [&g] { return policy_check(g, o); }; });
}

}  // namespace certcustody::cli
