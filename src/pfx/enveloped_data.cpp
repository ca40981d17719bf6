#include "pfx/enveloped_data.h"

#include <openssl/asn1t.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/safestack.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>

namespace certcustody::pfx {
namespace {

// The RFC 5652 types we emit, encoded by OpenSSL's template encoder. Only the
// fields we write appear: originatorInfo and unprotectedAttrs are always
// absent (so EnvelopedData is v0, §6.1), and RecipientInfo is always the
// untagged ktri alternative of its CHOICE, so the SET OF holds KTRIs directly.
struct CcIssuerAndSerial {  // §10.2.4
  X509_NAME* issuer;
  ASN1_INTEGER* serial;
};
struct CcKeyTransRecipientInfo {  // §6.2.1
  int32_t version;
  CcIssuerAndSerial* rid;
  X509_ALGOR* key_encryption_algorithm;
  ASN1_OCTET_STRING* encrypted_key;
};
DEFINE_STACK_OF(CcKeyTransRecipientInfo)
struct CcEncryptedContentInfo {  // §6.1
  ASN1_OBJECT* content_type;
  X509_ALGOR* content_encryption_algorithm;
  ASN1_OCTET_STRING* encrypted_content;
};
struct CcEnvelopedData {  // §6.1
  int32_t version;
  STACK_OF(CcKeyTransRecipientInfo)* recipient_infos;
  CcEncryptedContentInfo* encrypted_content_info;
};
struct CcContentInfo {  // §3
  ASN1_OBJECT* content_type;
  CcEnvelopedData* content;
};

// clang-format off
ASN1_SEQUENCE(CcIssuerAndSerial) = {
  ASN1_SIMPLE(CcIssuerAndSerial, issuer, X509_NAME),
  ASN1_SIMPLE(CcIssuerAndSerial, serial, ASN1_INTEGER),
} static_ASN1_SEQUENCE_END(CcIssuerAndSerial)

ASN1_SEQUENCE(CcKeyTransRecipientInfo) = {
  ASN1_EMBED(CcKeyTransRecipientInfo, version, INT32),
  ASN1_SIMPLE(CcKeyTransRecipientInfo, rid, CcIssuerAndSerial),
  ASN1_SIMPLE(CcKeyTransRecipientInfo, key_encryption_algorithm, X509_ALGOR),
  ASN1_SIMPLE(CcKeyTransRecipientInfo, encrypted_key, ASN1_OCTET_STRING),
} static_ASN1_SEQUENCE_END(CcKeyTransRecipientInfo)

ASN1_SEQUENCE(CcEncryptedContentInfo) = {
  ASN1_SIMPLE(CcEncryptedContentInfo, content_type, ASN1_OBJECT),
  ASN1_SIMPLE(CcEncryptedContentInfo, content_encryption_algorithm, X509_ALGOR),
  ASN1_IMP_OPT(CcEncryptedContentInfo, encrypted_content, ASN1_OCTET_STRING, 0),
} static_ASN1_SEQUENCE_END(CcEncryptedContentInfo)

ASN1_SEQUENCE(CcEnvelopedData) = {
  ASN1_EMBED(CcEnvelopedData, version, INT32),
  ASN1_SET_OF(CcEnvelopedData, recipient_infos, CcKeyTransRecipientInfo),
  ASN1_SIMPLE(CcEnvelopedData, encrypted_content_info, CcEncryptedContentInfo),
} static_ASN1_SEQUENCE_END(CcEnvelopedData)

ASN1_SEQUENCE(CcContentInfo) = {
  ASN1_SIMPLE(CcContentInfo, content_type, ASN1_OBJECT),
  ASN1_EXP(CcContentInfo, content, CcEnvelopedData, 0),
} static_ASN1_SEQUENCE_END(CcContentInfo)
// clang-format on

constexpr std::size_t kCbcIvSize = 16;
constexpr int kMinRecipientBits = 2048;

template <const ASN1_ITEM* (*Item)()>
struct ItemDeleter {
  template <class T>
  void operator()(T* p) const noexcept { ASN1_item_free(reinterpret_cast<ASN1_VALUE*>(p), Item()); }
};
using ContentInfoPtr = std::unique_ptr<CcContentInfo, ItemDeleter<CcContentInfo_it>>;
using KtriPtr = std::unique_ptr<CcKeyTransRecipientInfo, ItemDeleter<CcKeyTransRecipientInfo_it>>;
using OctetStringPtr = std::unique_ptr<ASN1_OCTET_STRING, OsslDeleter<ASN1_OCTET_STRING_free>>;
using OaepParamsPtr = std::unique_ptr<RSA_OAEP_PARAMS, OsslDeleter<RSA_OAEP_PARAMS_free>>;

template <class T>
T* new_item(const ASN1_ITEM* it) {
  return reinterpret_cast<T*>(ASN1_item_new(it));
}

Error encode_failed(const std::string& what) {
  return openssl_error("pfx.encode_failed", what, "check that the OpenSSL default provider is loaded");
}

void set_object(ASN1_OBJECT*& field, int nid) {
  ASN1_OBJECT_free(field);
  field = OBJ_nid2obj(nid);  // a static object: nothing to free later
}

Status set_octets(ASN1_OCTET_STRING* s, std::span<const std::uint8_t> data) {
  if (ASN1_OCTET_STRING_set(s, data.data(), static_cast<int>(data.size())) != 1)
    return encode_failed("no memory for an OCTET STRING");
  return {};
}

// id-RSAES-OAEP with RSAES-OAEP-params all DEFAULT (SHA-1, MGF1-SHA-1, empty
// label): an empty SEQUENCE (RFC 4055 §4.1, RFC 8017 A.2.1), as OpenSSL's CMS
// writes it and requires it: the parameters may not be absent.
Status set_oaep_sha1(X509_ALGOR* alg) {
  OaepParamsPtr params(RSA_OAEP_PARAMS_new());
  ASN1_STRING* seq = params ? ASN1_item_pack(params.get(), ASN1_ITEM_rptr(RSA_OAEP_PARAMS), nullptr) : nullptr;
  if (seq == nullptr) return encode_failed("the RSAES-OAEP parameters cannot be encoded");
  if (X509_ALGOR_set0(alg, OBJ_nid2obj(NID_rsaesOaep), V_ASN1_SEQUENCE, seq) != 1) {
    ASN1_STRING_free(seq);
    return encode_failed("no memory for the key encryption algorithm");
  }
  return {};
}

// aes256-CBC with the IV as its OCTET STRING parameter (RFC 3565 §4.1).
Status set_aes256_cbc(X509_ALGOR* alg, std::span<const std::uint8_t> iv) {
  OctetStringPtr os(ASN1_OCTET_STRING_new());
  if (!os) return encode_failed("no memory for the IV");
  CC_TRY(set_octets(os.get(), iv));
  if (X509_ALGOR_set0(alg, OBJ_nid2obj(NID_aes_256_cbc), V_ASN1_OCTET_STRING, os.get()) != 1)
    return encode_failed("no memory for the content encryption algorithm");
  (void)os.release();  // owned by alg now
  return {};
}

Result<KtriPtr> recipient_info(X509* recipient, const SealedContent& sealed) {
  KtriPtr ri(new_item<CcKeyTransRecipientInfo>(ASN1_ITEM_rptr(CcKeyTransRecipientInfo)));
  if (!ri) return encode_failed("no memory for the RecipientInfo");
  ri->version = 0;  // issuerAndSerialNumber (§6.2.1)
  if (X509_NAME_set(&ri->rid->issuer, X509_get_issuer_name(recipient)) != 1 ||
      ASN1_STRING_copy(ri->rid->serial, X509_get0_serialNumber(recipient)) != 1)
    return encode_failed("the recipient's issuer and serial number cannot be copied");
  CC_TRY(set_oaep_sha1(ri->key_encryption_algorithm));
  CC_TRY(set_octets(ri->encrypted_key, sealed.wrapped_key));
  return ri;
}

Status fill_content(CcEncryptedContentInfo* eci, const SealedContent& sealed) {
  set_object(eci->content_type, NID_pkcs7_data);
  CC_TRY(set_aes256_cbc(eci->content_encryption_algorithm, sealed.iv));
  eci->encrypted_content = ASN1_OCTET_STRING_new();
  if (eci->encrypted_content == nullptr) return encode_failed("no memory for the encrypted content");
  return set_octets(eci->encrypted_content, sealed.ciphertext);
}

Status check_sealed(const SealedContent& sealed) {
  if (sealed.iv.size() != kCbcIvSize || sealed.wrapped_key.empty() || sealed.ciphertext.empty() ||
      sealed.ciphertext.size() % kCbcIvSize != 0)
    return Error{"pfx.sealed_invalid", "the sealed content is malformed (IV " + std::to_string(sealed.iv.size()) +
                                           " bytes, ciphertext " + std::to_string(sealed.ciphertext.size()) +
                                           " bytes, wrapped key " + std::to_string(sealed.wrapped_key.size()) + " bytes)",
                 "seal the content with KeyCustody::seal_for_recipient"};
  return {};
}

Result<Bytes> to_der(CcContentInfo* ci) {
  unsigned char* der = nullptr;
  const int n = ASN1_item_i2d(reinterpret_cast<ASN1_VALUE*>(ci), &der, ASN1_ITEM_rptr(CcContentInfo));
  if (n <= 0) return encode_failed("the EnvelopedData cannot be encoded");
  Bytes out(der, der + n);
  OPENSSL_free(der);
  return out;
}

std::string subject_text(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) < 0) return "?";
  char* p = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &p);
  return std::string(p, static_cast<std::size_t>(n));
}

std::string time_text(const ASN1_TIME* t) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || ASN1_TIME_print(bio.get(), t) != 1) return "?";
  char* p = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &p);
  return std::string(p, static_cast<std::size_t>(n));
}

Status check_recipient_key(X509* recipient, const std::string& who) {
  const EVP_PKEY* key = X509_get0_pubkey(recipient);
  std::string alg = "unreadable";
  if (key != nullptr && EVP_PKEY_is_a(key, "RSA") == 1) {
    if (EVP_PKEY_get_bits(key) >= kMinRecipientBits) return {};
    alg = "RSA-" + std::to_string(EVP_PKEY_get_bits(key));
  } else if (key != nullptr && EVP_PKEY_get0_type_name(key) != nullptr) {
    alg = EVP_PKEY_get0_type_name(key);
  }
  ERR_clear_error();  // an undecodable key leaves its reasons queued
  return Error{"pfx.recipient_unsupported", "the recipient key of " + who + " is " + alg +
                                                "; content is sealed for RSA keys of 2048 bits or more only",
               "issue the recipient an RSA certificate (2048 bits or more)"};
}

Status check_recipient_validity(X509* recipient, const std::string& who) {
  const ASN1_TIME* not_before = X509_get0_notBefore(recipient);
  const ASN1_TIME* not_after = X509_get0_notAfter(recipient);
  if (X509_cmp_current_time(not_before) >= 0)
    return Error{"pfx.recipient_expired", "the recipient certificate " + who + " is not valid before " +
                                              time_text(not_before),
                 "check this host's clock, or retry once the certificate is valid"};
  if (X509_cmp_current_time(not_after) <= 0)
    return Error{"pfx.recipient_expired", "the recipient certificate " + who + " expired on " + time_text(not_after),
                 "renew the recipient's encryption certificate and give the new one"};
  return {};
}

}  // namespace

Status check_recipient(X509* recipient) {
  if (recipient == nullptr)
    return Error{"pfx.recipient_unsupported", "no recipient certificate was given",
                 "give the recipient's RSA encryption certificate"};
  std::string who = "'";  // appended: GCC 12 -O3 reports a false -Wrestrict for "'" + std::string
  who.append(subject_text(recipient)).append("'");
  CC_TRY(check_recipient_key(recipient, who));
  CC_TRY(check_recipient_validity(recipient, who));
  // X509_get_key_usage is UINT32_MAX without a keyUsage extension (any use allowed).
  if ((X509_get_key_usage(recipient) & KU_KEY_ENCIPHERMENT) == 0)
    return Error{"pfx.recipient_key_usage", "the recipient certificate " + who + " does not allow keyEncipherment",
                 "issue the recipient an encryption certificate whose keyUsage includes keyEncipherment"};
  return {};
}

Result<Bytes> encode_enveloped_data(X509* recipient, const SealedContent& sealed) {
  if (recipient == nullptr) return check_recipient(recipient).error();
  CC_TRY(check_sealed(sealed));
  ContentInfoPtr ci(new_item<CcContentInfo>(ASN1_ITEM_rptr(CcContentInfo)));
  if (!ci) return encode_failed("no memory for the ContentInfo");
  set_object(ci->content_type, NID_pkcs7_enveloped);
  CcEnvelopedData* env = ci->content;
  env->version = 0;
  CC_TRY_ASSIGN(KtriPtr ri, recipient_info(recipient, sealed));
  if (sk_CcKeyTransRecipientInfo_push(env->recipient_infos, ri.get()) <= 0)
    return encode_failed("no memory for the RecipientInfos");
  (void)ri.release();  // owned by the SET OF now
  CC_TRY(fill_content(env->encrypted_content_info, sealed));
  return to_der(ci.get());
}

Result<Bytes> envelope_for(KeyCustody& custody, X509* recipient, std::span<const std::uint8_t> plaintext) {
  CC_TRY(check_recipient(recipient));
  CC_TRY_ASSIGN(SealedContent sealed, custody.seal_for_recipient(X509_get0_pubkey(recipient), plaintext));
  return encode_enveloped_data(recipient, sealed);
}

}  // namespace certcustody::pfx
