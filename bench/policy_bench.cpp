// Policy evaluations per second on one core: a profile with a Subject in
// cn-with-email form, e-mail and UPN SANs and a hex otherName (the
// reference's GUID), against a template policy, building the OpenSSL
// X509_NAME and GENERAL_NAMES each time. Baseline: the same request through
// JSON parsing alone, in the same run.
#include <benchmark/benchmark.h>

#include "policy.h"

namespace {

using namespace certcustody::policy;

const std::string kRequest =
    R"({"version":1,"attributes":{"upn":"IWUser0@contoso.example","email":"IWUser0@contoso.example",)"
    R"("common_name":"IWUser0","object_guid":"04 10 b8 ba 11 22 33 44 55 66 77 88 99 aa bb cc dd ee"}})";

Profile profile() {
  Profile p;
  p.name = "users";
  p.subject = SubjectForm::cn_with_email;
  p.san = {{SanKind::email, {}, {}, {}},
           {SanKind::upn, {}, {}, {}},
           {SanKind::other_name, "1.3.6.1.4.1.311.25.1", "object_guid", ValueEncoding::hex}};
  p.ekus = {"clientAuth"};
  p.allowed_email_domains = {"contoso.example"};
  return p;
}

void parse_only(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(parse_request_json(kRequest));
  state.SetItemsProcessed(state.iterations());
}

void evaluate_only(benchmark::State& state) {
  const Profile p = profile();
  const RequestAttributes r = parse_request_json(kRequest).value();
  TemplatePolicy t;
  t.supported = {"subject.cn", "subject.email", "san.email", "san.upn", "san.othername:1.3.6.1.4.1.311.25.1"};
  for (auto _ : state) {
    auto spec = evaluate(p, r, t);
    if (!spec) state.SkipWithError(spec.error().to_string().c_str());
    benchmark::DoNotOptimize(spec);
  }
  state.SetItemsProcessed(state.iterations());
}

void parse_and_evaluate(benchmark::State& state) {
  const Profile p = profile();
  for (auto _ : state) {
    auto r = parse_request_json(kRequest);
    auto spec = evaluate(p, r.value());
    benchmark::DoNotOptimize(spec);
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(parse_only);
BENCHMARK(evaluate_only);
BENCHMARK(parse_and_evaluate);

}  // namespace

BENCHMARK_MAIN();
