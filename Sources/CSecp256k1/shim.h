#include <secp256k1.h>
#include <secp256k1_ecdh.h>
#include <secp256k1_recovery.h>

/* Swift 6 treats the exported `secp256k1_context_static` pointer as shared mutable state; the library
 * never reassigns it, so hand it out through a function instead. Only valid for operations that do not
 * touch secret keys (parse, serialize, recover). */
static inline const secp256k1_context *vllm_proxy_secp256k1_context_static(void) {
    return secp256k1_context_static;
}
