#include <openssl/pem.h>

#include <cstdio>

#include "ca/ca_factory.h"
#include "cli/commands.h"
#include "cli/context.h"
#include "net/https_client.h"
#include "ra/distinguished_name.h"

namespace certcustody::cli {
namespace {

// PEM or DER input of a CSR or certificate, as DER.
Result<Bytes> read_der(const std::string& path, bool csr) {
  CC_TRY_ASSIGN(std::string text, read_text(path, csr ? "CSR" : "certificate"));
  BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  unsigned char* der = nullptr;
  int len = -1;
  if (csr) {
    X509ReqPtr req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
    if (req) len = i2d_X509_REQ(req.get(), &der);
  } else {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (cert) len = i2d_X509(cert.get(), &der);
  }
  if (len <= 0) return Bytes(text.begin(), text.end());  // taken as DER; the CA side checks it
  Bytes out(der, der + len);
  OPENSSL_free(der);
  return out;
}

std::string to_pem(const Bytes& der) {
  const unsigned char* p = der.data();
  X509Ptr x(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  BioPtr mem(BIO_new(BIO_s_mem()));
  if (!x || PEM_write_bio_X509(mem.get(), x.get()) != 1) return {};
  char* data = nullptr;
  long n = BIO_get_mem_data(mem.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

Status report(const ca::Enrollment& e, const std::string& out) {
  if (e.status == ca::Enrollment::Status::pending) {
    std::printf("pending: request %s (%s)%s%s\n", e.ticket.request_id.c_str(), e.ticket.message.c_str(),
                e.ticket.poll_uri.empty() ? "" : " poll at ", e.ticket.poll_uri.c_str());
    return {};
  }
  std::string pem = to_pem(e.certificate);
  for (const Bytes& c : e.chain) pem += to_pem(c);
  if (!out.empty()) CC_TRY(write_file_atomic(out, pem, 0644));
  CC_TRY_ASSIGN(std::string serial, ca::serial_hex(e.certificate));
  const unsigned char* p = e.certificate.data();
  X509Ptr x(d2i_X509(nullptr, &p, static_cast<long>(e.certificate.size())));
  std::printf("issued: serial %s, subject \"%s\", %zu chain certificate(s)%s%s\n", serial.c_str(),
              name_to_string(X509_get_subject_name(x.get())).c_str(), e.chain.size(), out.empty() ? "" : ", written to ",
              out.c_str());
  if (out.empty()) std::fputs(pem.c_str(), stdout);
  return {};
}

struct CaOptions {
  std::string ca, path, template_id, csr, id, out, request_id, poll_uri, cert, reason = "unspecified";
  std::vector<std::string> attributes;  // name=value
};

Status ca_ping(const Globals& g, const CaOptions& o) {
  CaSession s;
  CC_TRY_ASSIGN(TlsIdentity id, open_ra_identity(g, s));
  CC_TRY_ASSIGN(const CaEndpointConfig* ca, s.cfg.ca(o.ca));
  const std::string subject = name_to_string(X509_get_subject_name(id.certificate.get()));
  HttpsOptions options{ca->trust_anchor, std::chrono::milliseconds(ca->connect_timeout_ms),
                       std::chrono::milliseconds(ca->timeout_ms), true};
  CC_TRY_ASSIGN(auto client, HttpsClient::create(options, std::move(id)));
  std::string url = ca->url;
  if (!o.path.empty()) url += (url.back() == '/' && o.path.front() == '/') ? o.path.substr(1) : o.path;
  CC_TRY_ASSIGN(HttpsResponse r, client->get(url));
  std::printf("%s: HTTP %ld over mutual TLS as \"%s\" (RA key in the token)\n", url.c_str(), r.status,
              subject.c_str());
  return {};
}

Status ca_policy(const Globals& g, const CaOptions& o) {
  CaSession s;
  CC_TRY(connect_ca(g, o.ca, s));
  CC_TRY_ASSIGN(policy::TemplatePolicy t, s.client->fetch_policy(o.template_id));
  auto list = [](const std::set<std::string>& v) {
    std::string out;
    for (const auto& a : v) out += (out.empty() ? "" : ", ") + a;
    return out.empty() ? std::string("(not stated)") : out;
  };
  std::printf("template %s at CA %s (%s)\n  supported: %s\n  fixed: %s\n  key: %s, at least %u bits\n",
              o.template_id.c_str(), o.ca.c_str(), std::string(s.client->dialect()).c_str(), list(t.supported).c_str(),
              list(t.fixed).c_str(), t.key_algorithm.empty() ? "any algorithm" : t.key_algorithm.c_str(),
              t.min_key_bits);
  return {};
}

Status ca_enroll(const Globals& g, const CaOptions& o) {
  ca::SubmitRequest req;
  req.template_id = o.template_id;
  req.transaction_id = o.id;
  CC_TRY_ASSIGN(req.csr_der, read_der(o.csr, true));
  for (const std::string& a : o.attributes) {
    const auto eq = a.find('=');
    if (eq == std::string::npos || eq == 0)
      return Error{"cli.invalid_argument", "--attribute \"" + a + "\" is not name=value", "write e.g. common_name=IWUser0"};
    req.attributes.emplace_back(a.substr(0, eq), a.substr(eq + 1));
  }
  CaSession s;
  CC_TRY(connect_ca(g, o.ca, s));
  CC_TRY_ASSIGN(ca::Enrollment e, s.client->submit(req));
  return report(e, o.out);
}

Status ca_poll(const Globals& g, const CaOptions& o) {
  CaSession s;
  CC_TRY(connect_ca(g, o.ca, s));
  ca::PendingTicket ticket{o.request_id, o.poll_uri, {}, o.id, o.template_id, {}};
  CC_TRY_ASSIGN(ticket.csr_der, read_der(o.csr, true));  // an issued certificate must be for its key
  CC_TRY_ASSIGN(ca::Enrollment e, s.client->poll(ticket));
  return report(e, o.out);
}

Status ca_revoke(const Globals& g, const CaOptions& o) {
  ca::RevokeRequest req;
  CC_TRY_ASSIGN(req.reason, ca::parse_revocation_reason(o.reason));
  CC_TRY_ASSIGN(req.certificate, read_der(o.cert, false));
  req.transaction_id = o.id;
  CaSession s;
  CC_TRY(connect_ca(g, o.ca, s));
  CC_TRY(s.client->revoke(req));
  CC_TRY_ASSIGN(std::string serial, ca::serial_hex(req.certificate));
  std::printf("revoked: serial %s, reason %s\n", serial.c_str(), std::string(ca::reason_name(req.reason)).c_str());
  return {};
}

}  // namespace

void add_ca_commands(CLI::App& app, const Globals& g, Action& action) {
  static CaOptions o;
  CLI::App* ca = app.add_subcommand("ca", "the CAs of the configuration, over mutual TLS with the RA key in the token");
  ca->require_subcommand(1);
  auto ca_option = [](CLI::App* c) { c->add_option("--ca", o.ca, "name of a [ca.<name>] section")->required(); };

  CLI::App* ping = ca->add_subcommand("ping", "an HTTPS GET to a CA over mutual TLS with the RA key in the token");
  ca_option(ping);
  ping->add_option("--path", o.path, "path below the CA's url (default: the url itself)");
  ping->callback([&g, &action] { action = [&g] { return ca_ping(g, o); }; });

  CLI::App* pol = ca->add_subcommand("policy", "what a CA template supports or fixes, as the policy layer uses it");
  ca_option(pol);
  pol->add_option("--template", o.template_id, "template name (Microsoft CA) or certificate profile OID (DigiCert)")
      ->required();
  pol->callback([&g, &action] { action = [&g] { return ca_policy(g, o); }; });

  CLI::App* enroll = ca->add_subcommand("enroll", "submit a PKCS#10 to a CA: issued or pending");
  ca_option(enroll);
  enroll->add_option("--template", o.template_id, "template name or certificate profile OID")->required();
  enroll->add_option("--csr", o.csr, "PKCS#10 request (PEM or DER)")->required();
  enroll->add_option("--id", o.id, "transaction id: the idempotency key (DigiCert clientTransactionID)")->required();
  enroll->add_option("--attribute", o.attributes, "name=value pair for DigiCert (common_name, mail, ...)");
  enroll->add_option("--out", o.out, "write the certificate and chain (PEM) here");
  enroll->callback([&g, &action] { action = [&g] { return ca_enroll(g, o); }; });

  CLI::App* poll = ca->add_subcommand("poll", "ask a CA about a pending request");
  ca_option(poll);
  poll->add_option("--request-id", o.request_id, "the CA's request id from the pending answer")->required();
  poll->add_option("--id", o.id, "the submission's transaction id (DigiCert)");
  poll->add_option("--uri", o.poll_uri, "the pending answer's reference URI (Microsoft CA)");
  poll->add_option("--csr", o.csr, "the PKCS#10 the request was made with (PEM or DER)")->required();
  poll->add_option("--template", o.template_id, "the certificate profile OID it was enrolled with (DigiCert)");
  poll->add_option("--out", o.out, "write the certificate and chain (PEM) here");
  poll->callback([&g, &action] { action = [&g] { return ca_poll(g, o); }; });

  CLI::App* revoke = ca->add_subcommand("revoke", "revoke a certificate at the CA that issued it");
  ca_option(revoke);
  revoke->add_option("--cert", o.cert, "the certificate (PEM or DER)")->required();
  revoke->add_option("--reason", o.reason, "RFC 5280 reason: unspecified, keyCompromise, superseded, ...");
  revoke->add_option("--id", o.id, "transaction id for the CA's records");
  revoke->callback([&g, &action] { action = [&g] { return ca_revoke(g, o); }; });
}

}  // namespace certcustody::cli
