// Duplicate keys in the JSON the policy layer reads (request, template
// policy) are refused at any depth, naming the key and where it is: a
// "last one wins" parse would let a second "email" or "attributes" object
// silently replace what a reviewer of the file saw first.
#include <gtest/gtest.h>

#include "policy.h"

namespace certcustody::policy {
namespace {

struct Dup {
  std::string json;
  std::string path;  // JSON Pointer of the repeated key
};

TEST(PolicyJson, RequestDuplicatesAreRefusedAtAnyDepth) {
  for (const Dup& d : std::initializer_list<Dup>{
           {R"({"version":2,"attributes":{"email":"a@contoso.example","email":"b@contoso.example"}})",
            "/attributes/email"},
           {R"({"version":2,"attributes":{"upn":"a@contoso.example"},"attributes":{"upn":"evil@contoso.example"}})",
            "/attributes"},
           {R"({"version":1,"version":2,"attributes":{}})", "/version"},
           {R"({"version":2,"profile":"users","attributes":{},"profile":"admins"})", "/profile"},
           {R"({"version":2,"recipient":"sha256:00","recipient":"sha256:11","attributes":{}})", "/recipient"},
           // the same key written with an escape is the same key
           {R"({"version":2,"attributes":{"email":"a@contoso.example","em\u0061il":"b@contoso.example"}})",
            "/attributes/email"},
           // in objects a schema would refuse anyway: the duplicate is named first
           {R"({"version":2,"attributes":{},"x":[1,{"k":1},{"a":{"b":1,"b":2}}]})", "/x/2/a/b"},
           {R"({"version":2,"attributes":{},"x":{"a/b":1,"a/b":2}})", "/x/a~1b"},
       }) {
    auto r = parse_request_document(d.json);
    ASSERT_FALSE(r) << d.json;
    EXPECT_EQ(r.error().code, "policy.json_duplicate_key") << d.json << ": " << r.error().to_string();
    EXPECT_NE(r.error().what.find("\"" + d.path + "\""), std::string::npos) << d.json << ": " << r.error().what;
    EXPECT_FALSE(r.error().remedy.empty());
  }
}

TEST(PolicyJson, TemplatePolicyDuplicatesAreRefused) {
  for (const Dup& d : std::initializer_list<Dup>{
           {R"({"supported":["subject.cn"],"supported":["subject.cn","san.upn"]})", "/supported"},
           {R"({"fixed":[],"min_key_bits":4096,"min_key_bits":1024})", "/min_key_bits"},
           {R"({"key_algorithm":"EC","key_algorithm":"RSA"})", "/key_algorithm"},
           {R"({"supported":[],"vendor":{"n":{"x":1,"x":1}}})", "/vendor/n/x"},
       }) {
    auto t = parse_template_policy_json(d.json);
    ASSERT_FALSE(t) << d.json;
    EXPECT_EQ(t.error().code, "policy.json_duplicate_key") << d.json << ": " << t.error().to_string();
    EXPECT_NE(t.error().what.find("\"" + d.path + "\""), std::string::npos) << d.json << ": " << t.error().what;
  }
}

TEST(PolicyJson, TheSameKeyInDifferentObjectsIsFine) {
  auto t = parse_template_policy_json(R"({"supported":["subject.cn"],"vendor":{"supported":1,"x":{"supported":2}}})");
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_TRUE(t->supported.contains("subject.cn"));
  auto r = parse_request_document(R"({"version":2,"id":"id-1","attributes":{"upn":"a@contoso.example"}})");
  ASSERT_TRUE(r) << r.error().to_string();
}

// Keys are untrusted: the error shows them JSON-escaped, so a control or
// bidi character in a key cannot forge a line or reorder the log.
TEST(PolicyJson, TheNamedKeyIsEscaped) {
  auto r = parse_request_document("{\"version\":2,\"attributes\":{},\"a\\n\xE2\x80\xAE\":1,\"a\\n\xE2\x80\xAE\":2}");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "policy.json_duplicate_key") << r.error().to_string();
  EXPECT_EQ(r.error().what.find('\n'), std::string::npos) << r.error().what;
  EXPECT_EQ(r.error().what.find("\xE2\x80\xAE"), std::string::npos) << r.error().what;
  EXPECT_NE(r.error().what.find("\\u202e"), std::string::npos) << r.error().what;
}

}  // namespace
}  // namespace certcustody::policy
