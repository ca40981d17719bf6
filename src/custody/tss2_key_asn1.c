/* The ASN.1 of the "TSS2 PRIVATE KEY" file (TCG "TPM 2.0 Key File" draft, as
 * read by tpm2-openssl, tpm2-tss-engine and tpm2-tools), declared with
 * OpenSSL's ASN.1 templates. In C because the template macros are C. */
#include <openssl/asn1t.h>
#include <openssl/objects.h>
#include <string.h>

#include "custody/tss2_key_asn1.h"

typedef struct {
  ASN1_OBJECT *type;
  ASN1_BOOLEAN empty_auth; /* -1 when absent */
  ASN1_INTEGER *parent;
  ASN1_OCTET_STRING *pubkey;
  ASN1_OCTET_STRING *privkey;
} CC_TSS2_KEY;

ASN1_SEQUENCE(CC_TSS2_KEY) = {
    ASN1_SIMPLE(CC_TSS2_KEY, type, ASN1_OBJECT),
    ASN1_EXP_OPT(CC_TSS2_KEY, empty_auth, ASN1_BOOLEAN, 0),
    ASN1_SIMPLE(CC_TSS2_KEY, parent, ASN1_INTEGER),
    ASN1_SIMPLE(CC_TSS2_KEY, pubkey, ASN1_OCTET_STRING),
    ASN1_SIMPLE(CC_TSS2_KEY, privkey, ASN1_OCTET_STRING),
} ASN1_SEQUENCE_END(CC_TSS2_KEY)

IMPLEMENT_ASN1_FUNCTIONS(CC_TSS2_KEY)

static const char kLoadableKeyOid[] = "2.23.133.10.1.3";

int cc_tss2_key_encode(int empty_auth, uint64_t parent, const unsigned char *pub, size_t pub_len,
                       const unsigned char *priv, size_t priv_len, unsigned char **der) {
  CC_TSS2_KEY *k = CC_TSS2_KEY_new();
  int len = -1;
  if (k == NULL) return -1;
  k->type = OBJ_txt2obj(kLoadableKeyOid, 1);
  /* Written either way: the field has no DEFAULT, and readers (tpm2-openssl)
   * take an absent emptyAuth for an empty auth value. */
  k->empty_auth = empty_auth ? 0xff : 0;
  if (k->type != NULL && ASN1_INTEGER_set_uint64(k->parent, parent) == 1 &&
      ASN1_OCTET_STRING_set(k->pubkey, pub, (int)pub_len) == 1 &&
      ASN1_OCTET_STRING_set(k->privkey, priv, (int)priv_len) == 1) {
    *der = NULL;
    len = i2d_CC_TSS2_KEY(k, der);
  }
  CC_TSS2_KEY_free(k);
  return len;
}

int cc_tss2_key_decode(const unsigned char *der, size_t der_len, struct cc_tss2_key_parts *out) {
  const unsigned char *p = der;
  CC_TSS2_KEY *k = d2i_CC_TSS2_KEY(NULL, &p, (long)der_len);
  char oid[64];
  uint64_t parent = 0;
  int ok = 0;
  if (k == NULL) return 0;
  if (p == der + der_len && OBJ_obj2txt(oid, sizeof oid, k->type, 1) > 0 && strcmp(oid, kLoadableKeyOid) == 0 &&
      ASN1_INTEGER_get_uint64(&parent, k->parent) == 1 && k->pubkey->length >= 0 && k->privkey->length >= 0 &&
      (size_t)k->pubkey->length <= sizeof out->pub && (size_t)k->privkey->length <= sizeof out->priv) {
    out->empty_auth = k->empty_auth > 0;
    out->parent = parent;
    out->pub_len = (size_t)k->pubkey->length;
    out->priv_len = (size_t)k->privkey->length;
    memcpy(out->pub, k->pubkey->data, out->pub_len);
    memcpy(out->priv, k->privkey->data, out->priv_len);
    ok = 1;
  } else if (p == der + der_len && OBJ_obj2txt(oid, sizeof oid, k->type, 1) > 0) {
    ok = strcmp(oid, kLoadableKeyOid) == 0 ? 0 : -1; /* -1: another kind of TPM key (importable, sealed) */
  }
  CC_TSS2_KEY_free(k);
  return ok;
}
