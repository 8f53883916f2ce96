/* fh_ws: a strict RFC 6455 WebSocket codec, server side and client side. It owns no socket: the
 * broker reads bytes after the HTTP upgrade and pushes them through fh_ws_parse, and writes frames
 * whose headers come from fh_ws_frame_header / fh_ws_close_frame. A client (firehose-tail) parses
 * the server's unmasked frames with a parser from fh_ws_parser_init_client and masks what it sends
 * with fh_ws_client_frame_header + fh_ws_mask. The one extension it knows is RFC 7692
 * permessage-deflate, and only as far as framing goes: after fh_ws_parser_allow_compressed a
 * message may arrive with RSV1 set (out->compressed), and the caller inflates it (lib/fh_deflate)
 * and checks its UTF-8 with fh_utf8_valid. Otherwise every RSV bit must be zero. */
#ifndef FH_WS_H
#define FH_WS_H

#include <stddef.h>
#include <stdint.h>

#include "fh_utf8.h"

enum {
    FH_WS_OP_CONT = 0x0,
    FH_WS_OP_TEXT = 0x1,
    FH_WS_OP_BINARY = 0x2,
    FH_WS_OP_CLOSE = 0x8,
    FH_WS_OP_PING = 0x9,
    FH_WS_OP_PONG = 0xA,
};

/* Close codes this module produces or treats specially. */
enum {
    FH_WS_CLOSE_NORMAL = 1000,
    FH_WS_CLOSE_PROTOCOL = 1002,  /* protocol error */
    FH_WS_CLOSE_NO_STATUS = 1005, /* reported for a close frame without payload; never sent */
    FH_WS_CLOSE_BAD_DATA = 1007,  /* text that is not UTF-8 */
    FH_WS_CLOSE_TOO_BIG = 1009,   /* message over max_message */
    FH_WS_CLOSE_INTERNAL = 1011,  /* out of memory */
};

/* Results of fh_ws_parse. */
enum {
    FH_WS_NEED_MORE = 0, /* every byte given was consumed; feed more */
    FH_WS_MESSAGE,       /* a complete text or binary message */
    FH_WS_PING,
    FH_WS_PONG,
    FH_WS_CLOSE, /* the peer's close frame; the parser ignores everything after it */
    FH_WS_ERROR, /* close the connection with out->close_code; sticky */
};

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + RFC 6455 GUID)), 28 chars and
 * a NUL. The key should have passed fh_ws_key_valid; a key over 64 chars, or a libcrypto failure,
 * yields "". */
void fh_ws_accept_key(const char *client_key, char out[29]);

/* 1 when key is canonical base64 of exactly 16 bytes (24 chars ending "=="), else 0. */
int fh_ws_key_valid(const char *key);

/* One event from the parser. Pointers are borrowed from the parser and valid until the next
 * fh_ws_parse or fh_ws_parser_free. */
typedef struct fh_ws_msg {
    int opcode; /* FH_WS_OP_TEXT or _BINARY for MESSAGE; _PING, _PONG, _CLOSE for those */
    const unsigned char *data; /* MESSAGE, PING, PONG: unmasked payload; data[len] == 0 */
    size_t len;
    unsigned close_code; /* CLOSE: the peer's code (1005 when none); ERROR: the code to send */
    const char *reason;  /* CLOSE: the peer's UTF-8 reason (NUL-terminated, may be "");
                            ERROR: a short static description. NULL otherwise. */
    size_t reason_len;
    int compressed; /* MESSAGE: its first frame had RSV1 set (permessage-deflate): data is the
                       compressed payload, not yet UTF-8 checked */
} fh_ws_msg;

/* Parser state for one connection's client-to-server stream. Fields are private. */
typedef struct fh_ws_parser {
    size_t max_message; /* cap on one defragmented message's payload */
    int state;
    /* the frame being read */
    unsigned char hdr[14];
    unsigned hdr_have, hdr_need;
    int fin, opcode;
    uint64_t remaining; /* payload bytes still to come */
    unsigned char mask[4];
    unsigned mask_pos;
    /* the data message being assembled; msg_opcode is 0 when none is in progress */
    int msg_opcode;
    unsigned char *msg; /* owned; capacity msg_cap, at most max_message + 1 */
    size_t msg_len, msg_cap;
    fh_utf8_state utf8; /* incremental UTF-8 check of a text message */
    /* the control frame being read (at most 125 bytes, plus a NUL) */
    unsigned char ctl[126];
    size_t ctl_len;
    /* the sticky error */
    unsigned err_code;
    const char *err_reason;
    int client;         /* 1: parses a server's stream (frames must be unmasked) */
    int compressed_ok;  /* RSV1 allowed on a message's first frame (permessage-deflate) */
    int msg_compressed; /* the message being assembled is compressed */
} fh_ws_parser;

/* Initialises p; allocates nothing until payload arrives. */
void fh_ws_parser_init(fh_ws_parser *p, size_t max_message);

/* The same for a client reading a server's stream: every rule of fh_ws_parse holds, except that
 * frames must be unmasked (a masked frame is error 1002, "masked server frame"). */
void fh_ws_parser_init_client(fh_ws_parser *p, size_t max_message);

/* Allows RSV1 ("per-message compressed", RFC 7692) on the first frame of a data message, once
 * permessage-deflate has been negotiated. RSV1 on a control frame or a continuation, and RSV2 or
 * RSV3 anywhere, stay protocol errors (1002). A compressed message is capped at max_message
 * bytes as received; the caller caps what it inflates to. */
void fh_ws_parser_allow_compressed(fh_ws_parser *p);

/* Frees the message buffer; p may be initialised again afterwards. */
void fh_ws_parser_free(fh_ws_parser *p);

/* Consumes bytes from buf[0..len) until one event is complete or the input runs out, and sets
 * *consumed to the number of bytes used: never more than len, all of them for FH_WS_NEED_MORE,
 * at least one for any other result when len > 0. The caller feeds the rest, buf + *consumed, in
 * the next call, so a loop over the input always ends. Returns an FH_WS_* result and fills *out
 * as described at fh_ws_msg. Text messages are UTF-8 checked as they arrive, so invalid text
 * fails before its last fragment. Control frames may arrive between fragments of a message.
 * FH_WS_ERROR is sticky: later calls return it again and swallow their input. After
 * FH_WS_CLOSE, later input is swallowed too, with FH_WS_NEED_MORE. Errors (out->close_code):
 *   1002 unmasked frame, reserved bits or opcode, control frame fragmented or over 125 bytes,
 *        continuation without a start, new data frame inside a fragmented message, length not
 *        in its minimal encoding or with the top bit set, close payload of 1 byte, a close
 *        code that may not be sent, or a close reason that is not UTF-8;
 *   1007 text that is not UTF-8;
 *   1009 message over max_message (detected from the frame header, before its payload);
 *   1011 out of memory. */
int fh_ws_parse(fh_ws_parser *p, const unsigned char *buf, size_t len, size_t *consumed,
                fh_ws_msg *out);

/* Writes the header of an unmasked server frame with FIN set. Returns its length: 2 for
 * payload_len < 126, 4 up to 65535, else 10. */
size_t fh_ws_frame_header(unsigned char out[10], int opcode, uint64_t payload_len);

/* Writes a whole close frame with code and reason (NULL for none); the reason, which must be
 * UTF-8, is cut to 123 bytes at a character boundary. code 0 writes an empty close payload (no
 * code, no reason). Returns the frame's length, at most 127. */
size_t fh_ws_close_frame(unsigned char out[128], unsigned code, const char *reason);

/* Writes the header of a masked client frame with FIN set, mask key included. Returns its length:
 * 6 for payload_len < 126, 8 up to 65535, else 14. The payload must then be masked with the same
 * key (fh_ws_mask, from position 0). */
size_t fh_ws_client_frame_header(unsigned char out[14], int opcode, uint64_t payload_len,
                                 const unsigned char key[4]);

/* XORs buf[0..n) with the mask key, starting at key position *pos (0 for a frame's first byte),
 * and advances *pos, so a payload can be masked in pieces. */
void fh_ws_mask(unsigned char *buf, size_t n, const unsigned char key[4], unsigned *pos);

#endif
