/* fh_deflate: RFC 7692 permessage-deflate for the broker's WebSocket stream.
 *
 * The broker accepts the extension with both "no context takeover" parameters: every message is
 * compressed on its own (server_no_context_takeover) and so is every message a client sends
 * (client_no_context_takeover). That is what lets the stream compress an event once and send the
 * same compressed bytes to every subscriber that negotiated the extension (a context carried from
 * message to message would make each connection's bytes different), and it means a connection
 * keeps no compression state: the one deflater and the one inflater belong to the stream thread.
 *
 * A firehose `event` message is a per-subscriber head (`{"op":"event","sub":"ID`) in front of
 * bytes shared by every subscriber. Compressed, it is the head as one stored (uncompressed)
 * DEFLATE block, fh_deflate_stored_header, followed by the shared bytes compressed from an empty
 * window: a stored block ends on a byte boundary and the shared part refers to nothing before
 * it, so the concatenation is one valid message.
 *
 * Nothing here is thread-safe: a deflater, an inflater and a cache belong to one thread. */
#ifndef FH_DEFLATE_H
#define FH_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

#include "fh_error.h"

/* The Sec-WebSocket-Extensions value the broker answers with. */
#define FH_DEFLATE_RESPONSE                                                                        \
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

/* Reads a client's Sec-WebSocket-Extensions header (several headers joined with ", "; NULL when
 * absent) and picks the first permessage-deflate offer the broker can honour: well-formed (known
 * parameters, each at most once, window bits 8-15) and not asking the server for a window under
 * 2^15 bytes (server_max_window_bits below 15: the shared bytes are compressed once, with one
 * window). Returns 1 and writes the response header's value into out (FH_DEFLATE_RESPONSE, plus
 * "; server_max_window_bits=15" when the offer named it, as RFC 7692 7.1.2.1 asks); 0 when no
 * offer fits (the connection goes on uncompressed), with out "". */
int fh_deflate_negotiate(const char *offers, char *out, size_t size);

/* A non-final stored DEFLATE block header for len bytes (len <= 65535) at a byte boundary: 5
 * bytes (BFINAL 0, BTYPE 00, LEN, NLEN). The len bytes follow it verbatim. */
#define FH_DEFLATE_STORED_MAX 65535
size_t fh_deflate_stored_header(unsigned char out[5], size_t len);

/* in[0..len) as a whole message of stored blocks (as many as needed), ending as RFC 7692 7.2.1
 * asks with the header byte of an empty stored block whose LEN/NLEN (00 00 ff ff) the receiver
 * appends: a "compressed" message that costs 5 bytes per 65535 plus 1 and no CPU. out must hold
 * FH_DEFLATE_STORED_SIZE(len) bytes; returns that. */
#define FH_DEFLATE_STORED_SIZE(len)                                                                \
    ((len) + 5 * (((len) + FH_DEFLATE_STORED_MAX - 1) / FH_DEFLATE_STORED_MAX) + 1)
size_t fh_deflate_stored(unsigned char *out, const void *in, size_t len);

/* The header of an unmasked server text frame with FIN and RSV1 ("compressed") set; the
 * payload_len counts the compressed payload. Returns 2, 4 or 10 as fh_ws_frame_header. */
size_t fh_deflate_frame_header(unsigned char out[10], uint64_t payload_len);

/* ---- compressing --------------------------------------------------------------------------- */

typedef struct fh_deflater fh_deflater;

/* A deflater at zlib level 1-9 (raw DEFLATE, 32 KiB window, memLevel 8: about 270 KiB, allocated
 * here, freed by fh_deflater_free). NULL when out of memory or level is out of range. */
fh_deflater *fh_deflater_new(int level);
void fh_deflater_free(fh_deflater *d);

/* Compresses in[0..len) as one message from an empty window (no context takeover): raw DEFLATE
 * blocks, none final, ending on a byte boundary, without the trailing 00 00 ff ff of the sync
 * flush (RFC 7692 7.2.1). Returns FH_OK with *out (malloc'd, the caller frees) and *outlen;
 * FH_ERR_NOMEM or FH_ERR_IO (zlib failed) otherwise. */
fh_err fh_deflate_message(fh_deflater *d, const void *in, size_t len, unsigned char **out,
                          size_t *outlen);

/* The compressed forms of one shared byte string, kept with it: up to FH_DEFLATE_VARIANTS
 * slices of it (variant 0..N-1, chosen by the caller: which part of the string a protocol sends),
 * each compressed on first use and then shared. NULL until the first use. */
#define FH_DEFLATE_VARIANTS 3
/* Shorter messages go out as stored blocks: compressing them would not pay for the CPU. */
#define FH_DEFLATE_MIN_BYTES 64
typedef struct fh_deflate_cache fh_deflate_cache;

/* The bytes to send for variant v, whose uncompressed bytes are in[0..len), as the end of a
 * compressed message: compressed with d from an empty window when that saves at least 8 bytes
 * (and len is at least FH_DEFLATE_MIN_BYTES), else the same bytes as stored blocks
 * (fh_deflate_stored), which any inflater takes too. Made on the first call and kept in *cache;
 * *compressed says which. NULL only when out of memory. *added is what this call added to the
 * cache's memory (allocator overhead included), 0 when nothing; the caller counts it against
 * its caps. The bytes live until fh_deflate_cache_free. */
const unsigned char *fh_deflate_cached(fh_deflate_cache **cache, fh_deflater *d, unsigned v,
                                       const void *in, size_t len, size_t *zlen, int *compressed,
                                       size_t *added);
void fh_deflate_cache_free(fh_deflate_cache *cache);

/* ---- decompressing ------------------------------------------------------------------------- */

typedef struct fh_inflater fh_inflater;

/* An inflater for messages compressed from an empty window (client_no_context_takeover). About
 * 7 KiB, plus a 32 KiB window once used, plus the output buffer: at most max_out + 1 bytes of
 * the largest fh_inflate_message so far. NULL when out of memory. */
fh_inflater *fh_inflater_new(void);
void fh_inflater_free(fh_inflater *f);

/* Inflates one compressed message in[0..len) (the 00 00 ff ff trailer is appended here). On
 * FH_OK *out points at the bytes (NUL-terminated, valid until the next call) and *outlen is
 * their count. FH_ERR_TOOBIG when they would be more than max_out bytes (decompression stops
 * there: a small message cannot make it allocate more), FH_ERR_PARSE when in is not valid
 * DEFLATE, FH_ERR_NOMEM; errbuf says which. */
fh_err fh_inflate_message(fh_inflater *f, const void *in, size_t len, size_t max_out,
                          const unsigned char **out, size_t *outlen, char *errbuf, size_t errsize);

#endif
