#include "fh_ws.h"
#include "fh_base64.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

enum { ST_HEADER, ST_PAYLOAD, ST_CLOSED, ST_FAILED };

/* ---- handshake ----------------------------------------------------------------------------- */

void fh_ws_accept_key(const char *client_key, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char buf[64 + sizeof(guid)], md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t klen = strlen(client_key);

    out[0] = '\0';
    if (klen > 64)
        return;
    memcpy(buf, client_key, klen);
    memcpy(buf + klen, guid, sizeof(guid) - 1);
    if (!EVP_Digest(buf, klen + sizeof(guid) - 1, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
        return;
    fh_b64_encode(md, 20, out, 29);
}

int fh_ws_key_valid(const char *key)
{
    int v = 0;
    if (!key)
        return 0;
    for (int i = 0; i < 22; i++)
        if ((v = fh_b64_digit(key[i])) < 0)
            return 0;
    /* 16 bytes fill 22 digits and 2 bits: the last digit's low 4 bits must be zero. */
    return (v & 0x0F) == 0 && key[22] == '=' && key[23] == '=' && key[24] == '\0';
}

/* ---- parser -------------------------------------------------------------------------------- */

void fh_ws_parser_init(fh_ws_parser *p, size_t max_message)
{
    memset(p, 0, sizeof(*p));
    /* keeps msg_len + n + 1 from overflowing */
    p->max_message = max_message > SIZE_MAX / 2 ? SIZE_MAX / 2 : max_message;
    p->state = ST_HEADER;
    p->hdr_need = 2;
}

void fh_ws_parser_init_client(fh_ws_parser *p, size_t max_message)
{
    fh_ws_parser_init(p, max_message);
    p->client = 1;
}

void fh_ws_parser_allow_compressed(fh_ws_parser *p)
{
    p->compressed_ok = 1;
}

void fh_ws_parser_free(fh_ws_parser *p)
{
    free(p->msg);
    p->msg = NULL;
    p->msg_len = p->msg_cap = 0;
}

static int fail(fh_ws_parser *p, unsigned code, const char *reason)
{
    p->state = ST_FAILED;
    p->err_code = code;
    p->err_reason = reason;
    return FH_WS_ERROR;
}

/* Checks the first two header bytes, before any length or mask arrives. Returns 0 or
 * FH_WS_ERROR. */
static int header_start(fh_ws_parser *p)
{
    unsigned b0 = p->hdr[0], b1 = p->hdr[1], len7 = b1 & 0x7F;
    p->fin = (int)(b0 >> 7);
    p->opcode = (int)(b0 & 0x0F);
    /* RSV1 marks a compressed message: on its first frame only, and only once negotiated */
    int rsv1_ok = p->compressed_ok && (p->opcode == FH_WS_OP_TEXT || p->opcode == FH_WS_OP_BINARY);
    if (b0 & (rsv1_ok ? 0x30 : 0x70))
        return fail(p, FH_WS_CLOSE_PROTOCOL, "reserved bits set");
    if (p->client && (b1 & 0x80))
        return fail(p, FH_WS_CLOSE_PROTOCOL, "masked server frame");
    if (!p->client && !(b1 & 0x80))
        return fail(p, FH_WS_CLOSE_PROTOCOL, "unmasked client frame");
    switch (p->opcode) {
    case FH_WS_OP_CONT:
        if (!p->msg_opcode)
            return fail(p, FH_WS_CLOSE_PROTOCOL, "continuation without a start");
        break;
    case FH_WS_OP_TEXT:
    case FH_WS_OP_BINARY:
        if (p->msg_opcode)
            return fail(p, FH_WS_CLOSE_PROTOCOL, "new message inside a fragmented one");
        break;
    case FH_WS_OP_CLOSE:
    case FH_WS_OP_PING:
    case FH_WS_OP_PONG:
        if (!p->fin)
            return fail(p, FH_WS_CLOSE_PROTOCOL, "fragmented control frame");
        if (len7 > 125)
            return fail(p, FH_WS_CLOSE_PROTOCOL, "control frame over 125 bytes");
        break;
    default:
        return fail(p, FH_WS_CLOSE_PROTOCOL, "reserved opcode");
    }
    p->hdr_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (p->client ? 0 : 4);
    return 0;
}

/* Decodes the length and mask of a complete header. Returns 0 or FH_WS_ERROR. */
static int header_end(fh_ws_parser *p)
{
    const unsigned char *h = p->hdr + 2;
    uint64_t n = p->hdr[1] & 0x7F;
    if (n == 126) {
        n = (uint64_t)h[0] << 8 | h[1];
        h += 2;
        if (n < 126)
            return fail(p, FH_WS_CLOSE_PROTOCOL, "length not minimally encoded");
    } else if (n == 127) {
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | h[i];
        h += 8;
        if (n >> 63)
            return fail(p, FH_WS_CLOSE_PROTOCOL, "length has its top bit set");
        if (n < 65536)
            return fail(p, FH_WS_CLOSE_PROTOCOL, "length not minimally encoded");
    }
    if (p->client)
        memset(p->mask, 0, 4); /* server frames are not masked: unmasking is the identity */
    else
        memcpy(p->mask, h, 4);
    p->mask_pos = 0;
    p->remaining = n;
    if (p->opcode & 0x8) {
        p->ctl_len = 0;
    } else {
        if (p->opcode != FH_WS_OP_CONT) {
            p->msg_opcode = p->opcode;
            p->msg_compressed = (p->hdr[0] & 0x40) != 0;
            p->msg_len = 0;
            memset(&p->utf8, 0, sizeof(p->utf8));
        }
        if (n > p->max_message - p->msg_len)
            return fail(p, FH_WS_CLOSE_TOO_BIG, "message too big");
    }
    p->state = ST_PAYLOAD;
    return 0;
}

/* Makes room for need bytes in the message buffer, growing it geometrically as payload arrives
 * (not as headers announce it) up to max_message + 1. Returns 0 or -1. */
static int grow(fh_ws_parser *p, size_t need)
{
    size_t cap = p->msg_cap ? p->msg_cap : 256;
    unsigned char *m;
    if (need <= p->msg_cap)
        return 0;
    while (cap < need && cap <= p->max_message)
        cap *= 2;
    if (cap > p->max_message + 1)
        cap = p->max_message + 1;
    if (!(m = realloc(p->msg, cap)))
        return -1;
    p->msg = m;
    p->msg_cap = cap;
    return 0;
}

static void unmask(unsigned char *dst, const unsigned char *src, size_t n, const unsigned char k[4],
                   unsigned *pos)
{
    unsigned j = *pos;
    for (size_t i = 0; i < n; i++, j = (j + 1) & 3)
        dst[i] = src[i] ^ k[j];
    *pos = j;
}

/* Unmasks n payload bytes into the control or message buffer. Returns 0 or FH_WS_ERROR. */
static int payload(fh_ws_parser *p, const unsigned char *src, size_t n)
{
    unsigned char *dst;
    if (p->opcode & 0x8) {
        dst = p->ctl + p->ctl_len; /* header_start bounded the frame to 125 bytes */
        p->ctl_len += n;
        unmask(dst, src, n, p->mask, &p->mask_pos);
        return 0;
    }
    if (grow(p, p->msg_len + n + 1))
        return fail(p, FH_WS_CLOSE_INTERNAL, "out of memory");
    dst = p->msg + p->msg_len;
    p->msg_len += n;
    unmask(dst, src, n, p->mask, &p->mask_pos);
    if (p->msg_opcode == FH_WS_OP_TEXT && !p->msg_compressed && fh_utf8_feed(&p->utf8, dst, n))
        return fail(p, FH_WS_CLOSE_BAD_DATA, "text is not UTF-8");
    return 0;
}

/* Codes a peer may put in a close frame (RFC 6455 7.4, and 1012-1014 registered since). */
static int close_code_ok(unsigned c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

static int close_done(fh_ws_parser *p, fh_ws_msg *out)
{
    out->opcode = FH_WS_OP_CLOSE;
    if (p->ctl_len == 0) {
        out->close_code = FH_WS_CLOSE_NO_STATUS;
        out->reason = "";
    } else {
        if (p->ctl_len == 1)
            return fail(p, FH_WS_CLOSE_PROTOCOL, "close payload of 1 byte");
        out->close_code = (unsigned)p->ctl[0] << 8 | p->ctl[1];
        if (!close_code_ok(out->close_code))
            return fail(p, FH_WS_CLOSE_PROTOCOL, "invalid close code");
        if (!fh_utf8_valid(p->ctl + 2, p->ctl_len - 2))
            return fail(p, FH_WS_CLOSE_PROTOCOL, "close reason is not UTF-8");
        p->ctl[p->ctl_len] = '\0';
        out->reason = (const char *)p->ctl + 2;
        out->reason_len = p->ctl_len - 2;
    }
    p->state = ST_CLOSED;
    return FH_WS_CLOSE;
}

/* Finishes the frame whose payload has all arrived. Returns an event, FH_WS_NEED_MORE for a
 * non-final fragment, or FH_WS_ERROR. */
static int frame_done(fh_ws_parser *p, fh_ws_msg *out)
{
    p->state = ST_HEADER;
    p->hdr_have = 0;
    p->hdr_need = 2;
    switch (p->opcode) {
    case FH_WS_OP_CLOSE:
        return close_done(p, out);
    case FH_WS_OP_PING:
    case FH_WS_OP_PONG:
        p->ctl[p->ctl_len] = '\0';
        out->opcode = p->opcode;
        out->data = p->ctl;
        out->len = p->ctl_len;
        return p->opcode == FH_WS_OP_PING ? FH_WS_PING : FH_WS_PONG;
    default:
        if (!p->fin)
            return FH_WS_NEED_MORE;
        if (p->msg_opcode == FH_WS_OP_TEXT && !p->msg_compressed && p->utf8.need)
            return fail(p, FH_WS_CLOSE_BAD_DATA, "text ends inside a character");
        out->opcode = p->msg_opcode;
        out->compressed = p->msg_compressed;
        out->len = p->msg_len;
        if (p->msg) {
            p->msg[p->msg_len] = '\0'; /* the buffer keeps its content until the next call */
            out->data = p->msg;
        } else {
            out->data = (const unsigned char *)"";
        }
        p->msg_opcode = 0;
        p->msg_compressed = 0;
        p->msg_len = 0;
        return FH_WS_MESSAGE;
    }
}

int fh_ws_parse(fh_ws_parser *p, const unsigned char *buf, size_t len, size_t *consumed,
                fh_ws_msg *out)
{
    size_t pos = 0;
    int r;

    memset(out, 0, sizeof(*out));
    if (p->state == ST_FAILED) {
        *consumed = len; /* so that a caller's loop over its input still ends */
        goto error;
    }
    if (p->state == ST_CLOSED) {
        *consumed = len;
        return FH_WS_NEED_MORE;
    }
    for (;;) {
        size_t n;
        if (p->state == ST_HEADER) {
            if (pos == len)
                break;
            n = p->hdr_need - p->hdr_have;
            if (n > len - pos)
                n = len - pos;
            memcpy(p->hdr + p->hdr_have, buf + pos, n);
            p->hdr_have += (unsigned)n;
            pos += n;
            if (p->hdr_have == 2 && p->hdr_need == 2) {
                if (header_start(p))
                    break;
                if (p->hdr_have < p->hdr_need)
                    continue;
                /* an unmasked short frame (client mode): those two bytes were the whole header */
            } else if (p->hdr_have < p->hdr_need) {
                continue;
            }
            if (header_end(p))
                break;
        }
        n = p->remaining < len - pos ? (size_t)p->remaining : len - pos;
        if (n && payload(p, buf + pos, n)) {
            pos += n;
            break;
        }
        pos += n;
        p->remaining -= n;
        if (p->remaining)
            break;
        r = frame_done(p, out);
        if (r != FH_WS_NEED_MORE) {
            *consumed = pos;
            if (r == FH_WS_ERROR)
                goto error;
            return r;
        }
    }
    *consumed = pos;
    if (p->state != ST_FAILED)
        return FH_WS_NEED_MORE;
error:
    memset(out, 0, sizeof(*out));
    out->close_code = p->err_code;
    out->reason = p->err_reason;
    out->reason_len = strlen(p->err_reason);
    return FH_WS_ERROR;
}

/* ---- encoding ------------------------------------------------------------------------------ */

size_t fh_ws_frame_header(unsigned char out[10], int opcode, uint64_t payload_len)
{
    out[0] = (unsigned char)(0x80 | (opcode & 0x0F));
    if (payload_len < 126) {
        out[1] = (unsigned char)payload_len;
        return 2;
    }
    if (payload_len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (unsigned char)(payload_len >> 8);
        out[3] = (unsigned char)payload_len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (unsigned char)(payload_len >> (56 - 8 * i));
    return 10;
}

size_t fh_ws_close_frame(unsigned char out[128], unsigned code, const char *reason)
{
    size_t rlen = 0;
    out[0] = 0x80 | FH_WS_OP_CLOSE;
    if (code == 0) {
        out[1] = 0;
        return 2;
    }
    if (reason) {
        while (rlen < 124 && reason[rlen])
            rlen++;
        rlen = fh_utf8_cut(reason, rlen, 123); /* not inside a character */
        memcpy(out + 4, reason, rlen);
    }
    out[1] = (unsigned char)(2 + rlen);
    out[2] = (unsigned char)((code >> 8) & 0xFF);
    out[3] = (unsigned char)(code & 0xFF);
    return 4 + rlen;
}

size_t fh_ws_client_frame_header(unsigned char out[14], int opcode, uint64_t payload_len,
                                 const unsigned char key[4])
{
    size_t h = fh_ws_frame_header(out, opcode, payload_len);
    out[1] |= 0x80;
    memcpy(out + h, key, 4);
    return h + 4;
}

void fh_ws_mask(unsigned char *buf, size_t n, const unsigned char key[4], unsigned *pos)
{
    unmask(buf, buf, n, key, pos);
}
