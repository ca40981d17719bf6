/* C interface of tss2_key_asn1.c (see there). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct cc_tss2_key_parts {
  int empty_auth;
  uint64_t parent;
  size_t pub_len;
  size_t priv_len;
  unsigned char pub[1024];  /* marshalled TPM2B_PUBLIC */
  unsigned char priv[1024]; /* marshalled TPM2B_PRIVATE */
};

/* DER of a loadable key; *der is OPENSSL_malloc'ed. Returns its length, or -1. */
int cc_tss2_key_encode(int empty_auth, uint64_t parent, const unsigned char *pub, size_t pub_len,
                       const unsigned char *priv, size_t priv_len, unsigned char **der);
/* 1: a loadable key, -1: a TPM key of another type, 0: not a TSS2 key. */
int cc_tss2_key_decode(const unsigned char *der, size_t der_len, struct cc_tss2_key_parts *out);

#ifdef __cplusplus
}
#endif
