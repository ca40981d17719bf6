// The certificates an issued PFX may be enveloped for ([pipeline] recipients):
// a request names one by its SHA-256 thumbprint. A request cannot bring its
// own recipient: whoever can drop a request file would otherwise receive any
// PFX the policy allows, encrypted to a key of their choosing.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/ossl.h"

namespace certcustody::pipeline {

class RecipientSet {
 public:
  static Result<RecipientSet> load(const std::vector<std::string>& pem_files);
  // "sha256:<64 hex>" or "<64 hex>", any case.
  Result<X509*> find(const std::string& name) const;
  std::size_t size() const { return by_thumbprint_.size(); }

  static Result<std::string> thumbprint(X509* cert);  // lower-case hex SHA-256 of the DER

 private:
  std::map<std::string, std::shared_ptr<X509>> by_thumbprint_;
};

}  // namespace certcustody::pipeline
