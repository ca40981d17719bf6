#include <cstdio>

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
  bool from_ca = false;
};

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
  if (o.from_ca && !o.template_policy.empty())
    return Error{"cli.invalid_argument", "--from-ca and --template-policy both give the template's policy",
                 "use one of them"};
  if (!o.template_policy.empty()) {
    CC_TRY_ASSIGN(std::string tpl_text, read_text(o.template_policy, "template policy"));
    CC_TRY_ASSIGN(tpl, policy::parse_template_policy_json(tpl_text));
  }
  if (o.from_ca) {  // the CA's own word on the template, over the RA's mutual TLS
    CaSession s;
    CC_TRY(connect_ca(g, profile->ca, s));
    CC_TRY_ASSIGN(tpl, s.client->fetch_policy(profile->template_id));
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
  check->add_flag("--from-ca", o.from_ca, "fetch the template's policy from the profile's CA");
  check->callback([&g, &action] { action = [&g] { return policy_check(g, o); }; });
}

}  // namespace certcustody::cli
