#include "pipeline/recipients.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cctype>

#include "pfx/enveloped_data.h"

namespace certcustody::pipeline {

Result<std::string> RecipientSet::thumbprint(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (X509_digest(cert, EVP_sha256(), md, &n) != 1)
    return openssl_error("pipeline.recipient_invalid", "cannot hash a recipient certificate", "check the PEM file");
  return to_hex_lower(std::span<const std::uint8_t>(md, n));
}

Result<RecipientSet> RecipientSet::load(const std::vector<std::string>& pem_files) {
  RecipientSet set;
  for (const std::string& path : pem_files) {
    BioPtr bio(BIO_new_file(path.c_str(), "r"));
    if (!bio)
      return Error{"config.recipient_unreadable", "cannot read recipient certificate file " + path,
                   "check [pipeline] recipients: PEM files readable by the service user"};
    int count = 0;
    while (X509* raw = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
      std::shared_ptr<X509> cert(raw, X509_free);
      if (Status usable = pfx::check_recipient(raw);
          !usable && usable.error().code != "pfx.recipient_expired")  // expiry is checked per request
        return Error{usable.error().code, path + ": " + usable.error().what,
                     usable.error().remedy + ", then list it in [pipeline] recipients"};
      CC_TRY_ASSIGN(std::string tp, thumbprint(raw));
      set.by_thumbprint_[tp] = std::move(cert);
      ++count;
    }
    ERR_clear_error();  // the end of the PEM stream
    if (count == 0)
      return Error{"config.recipient_unreadable", path + " holds no PEM certificate",
                   "give [pipeline] recipients the PEM certificates of the services that receive PFX files"};
  }
  return set;
}

Result<X509*> RecipientSet::find(const std::string& name) const {
  std::string hex = name.rfind("sha256:", 0) == 0 ? name.substr(7) : name;
  std::transform(hex.begin(), hex.end(), hex.begin(), [](unsigned char c) { return std::tolower(c); });
  auto it = by_thumbprint_.find(hex);
  if (it == by_thumbprint_.end())
    return Error{"request.recipient_unknown",
                 "the request's recipient " + name + " is not one of the " + std::to_string(by_thumbprint_.size()) +
                     " configured recipient certificates",
                 "name a recipient by the SHA-256 thumbprint of a certificate in [pipeline] recipients "
                 "(openssl x509 -noout -fingerprint -sha256), or add its certificate there and reload"};
  return it->second.get();
}

}  // namespace certcustody::pipeline
