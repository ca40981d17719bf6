// The SOAP core: hostile documents refused, namespaces checked by URI.
#include <gtest/gtest.h>

#include <string>

#include "ca/soap.h"
#include "ca/xml.h"

namespace certcustody::ca {
namespace {

TEST(Xml, ParsesAndNavigatesByNamespaceUri) {
  auto d = xml::Document::parse(R"(<x:a xmlns:x="urn:one" xmlns:y="urn:two"><y:b>  hi  </y:b><x:b>there</x:b></x:a>)",
                                "test");
  ASSERT_TRUE(d) << d.error().to_string();
  EXPECT_TRUE(xml::is(d->root(), "urn:one", "a"));
  EXPECT_EQ(xml::text(xml::child(d->root(), "urn:two", "b")), "hi");
  EXPECT_EQ(xml::text(xml::child(d->root(), "urn:one", "b")), "there");
  EXPECT_EQ(xml::child(d->root(), "urn:three", "b"), nullptr);  // same local name, other namespace
}

TEST(Xml, SamePrefixDifferentNamespaceIsNotConfused) {
  // The prefix is irrelevant: "s:" bound to a wrong URI is not SOAP.
  auto r = soap::parse_response(R"(<s:Envelope xmlns:s="urn:not-soap"><s:Body><x/></s:Body></s:Envelope>)", "t");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "ca.response_unreadable");
}

TEST(Xml, RefusesBillionLaughs) {
  std::string doc = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">";
  for (int i = 1; i < 10; ++i)
    doc += "<!ENTITY lol" + std::to_string(i) + " \"" + std::string(10, '&') + "\">";
  doc += "]><lolz>&lol9;</lolz>";
  auto d = xml::Document::parse(doc, "bomb");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code, "ca.xml_hostile");
}

TEST(Xml, RefusesExternalEntity) {
  auto d = xml::Document::parse(
      R"(<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>)", "xxe");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code, "ca.xml_hostile");
  EXPECT_EQ(d.error().what.find("root:"), std::string::npos);
}

TEST(Xml, RefusesExternalDtd) {
  auto d = xml::Document::parse(R"(<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://127.0.0.1:1/x.dtd"><r/>)", "dtd");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code, "ca.xml_hostile");
}

TEST(Xml, RefusesOversizedDocument) {
  std::string big = "<r>" + std::string(xml::kDefaultMaxBytes, 'a') + "</r>";
  auto d = xml::Document::parse(big, "big");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code, "ca.xml_too_large");
}

TEST(Xml, RefusesDeepNesting) {
  std::string deep;
  for (int i = 0; i < 5000; ++i) deep += "<a>";
  for (int i = 0; i < 5000; ++i) deep += "</a>";
  auto d = xml::Document::parse(deep, "deep");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code, "ca.xml_malformed");
}

TEST(Xml, MalformedNamesTheProblem) {
  for (const char* bad : {"", "<a>", "<a></b>", "not xml at all", "<a x='1' x='2'/>", "<a>\x01</a>"}) {
    auto d = xml::Document::parse(bad, "response of X");
    ASSERT_FALSE(d) << bad;
    EXPECT_EQ(d.error().code, "ca.xml_malformed") << bad;
    EXPECT_NE(d.error().what.find("response of X"), std::string::npos);
  }
}

TEST(Xml, BuiltTextIsEscaped) {
  auto doc = xml::Document::create("urn:t", "t", "r");
  xml::add(doc.root(), doc.root()->ns, "v", "<&>\"'");
  auto back = xml::Document::parse(doc.serialize(), "round trip");
  ASSERT_TRUE(back);
  EXPECT_EQ(xml::text(xml::child(back->root(), "urn:t", "v")), "<&>\"'");
}

TEST(Xml, Base64WithWhitespaceAndPadding) {
  std::vector<unsigned char> bytes = {0, 1, 2, 250, 251, 252, 253};
  std::string enc = xml::base64_encode(bytes, true);
  enc.insert(4, "\r\n  ");
  auto dec = xml::base64_decode(enc, "t");
  ASSERT_TRUE(dec);
  EXPECT_EQ(*dec, bytes);
  EXPECT_FALSE(xml::base64_decode("abc", "t"));
  EXPECT_FALSE(xml::base64_decode("ab!=", "t"));
}

TEST(Soap, Soap11And12FaultsAreDecoded) {
  auto f12 = soap::parse_response(
      R"(<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode><s:Value xmlns:a="urn:x">a:Bad</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en">why</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>)",
      "t");
  ASSERT_TRUE(f12);
  ASSERT_TRUE(f12->fault);
  EXPECT_EQ(f12->fault->code, "Sender");
  EXPECT_EQ(f12->fault->subcode, "Bad");
  EXPECT_EQ(f12->fault->reason, "why");
  auto f11 = soap::parse_response(
      R"(<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><e:Fault><faultcode>e:Server</faultcode><faultstring>down</faultstring><detail><errorcode>42</errorcode></detail></e:Fault></e:Body></e:Envelope>)",
      "t");
  ASSERT_TRUE(f11);
  ASSERT_TRUE(f11->fault);
  EXPECT_EQ(f11->fault->code, "Server");
  EXPECT_EQ(f11->fault->reason, "down");
  EXPECT_EQ(xml::text(xml::child(f11->fault->detail, "", "errorcode")), "42");
}

TEST(Soap, EnvelopeRoundTripCarriesAddressing) {
  auto e = soap::make_envelope(soap::Version::soap12, "urn:action", "https://ca.example/svc", "urn:uuid:1");
  xml::add(e.body, xml::declare(e.body, "urn:p", "p"), "Op", "x");
  auto r = soap::parse_request(e.doc.serialize(), "t");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->action, "urn:action");
  EXPECT_EQ(r->to, "https://ca.example/svc");
  EXPECT_EQ(r->message_id, "urn:uuid:1");
  EXPECT_TRUE(xml::is(r->payload, "urn:p", "Op"));
  EXPECT_EQ(soap::new_message_id().size(), 45u);
  EXPECT_NE(soap::new_message_id(), soap::new_message_id());
}

}  // namespace
}  // namespace certcustody::ca
