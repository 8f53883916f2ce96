/* fh_json_internal: what the JSON parser (fh_json.c) and the doc it parses into (fh_json_doc.c:
 * the arena, accessors, equality, jansson conversions) share. Private to those two files; every
 * other module uses fh_json.h. */
#ifndef FH_JSON_INTERNAL_H
#define FH_JSON_INTERNAL_H

#include <string.h>

#include "fh_json.h"

/* ---- the arena -------------------------------------------------------------------------------
 * A list of blocks; allocation bumps a pointer in the newest one. The first block is kept across
 * resets. Every byte the doc mallocs (blocks, scratch stack, key table) is counted in held, and
 * held never exceeds cap. */

struct fh_json_block {
    fh_json_block *next;
    size_t size; /* bytes in data */
    size_t used;
    max_align_t data[];
};

struct fh_json_keyslot {
    uint64_t serial; /* the object the key belongs to; 0: empty slot */
    uint64_t hash;
    size_t idx; /* the key's index in the scratch stack */
};

/* Scratch nodes the parser's stack starts with: 64, fewer under a small cap (a quarter of it). */
size_t fh_json_stack_first(const fh_json_doc *d);

/* Bytes the doc may still take before its cap. */
static inline size_t fh_json_room(const fh_json_doc *d)
{
    return d->cap - d->held;
}

/* Appends a block with at least n bytes of data (the first block: 16 KiB or the room left); NULL
 * with *rc set to FH_ERR_TOOBIG past the cap or FH_ERR_NOMEM. */
fh_json_block *fh_json_block_add(fh_json_doc *d, size_t n, fh_err *rc);

/* Bumps n bytes aligned to align out of b, or NULL when b has no room for them. */
static inline void *fh_json_block_take(fh_json_block *b, size_t n, size_t align)
{
    size_t off = (b->used + align - 1) & ~(align - 1);
    if (off > b->size || n > b->size - off)
        return NULL;
    b->used = off + n;
    return (unsigned char *)b->data + off;
}

/* Returns n bytes aligned to align (a power of two, at most max_align_t), or NULL with *rc set. */
void *fh_json_arena_alloc(fh_json_doc *d, size_t n, size_t align, fh_err *rc);

/* Gives back the tail of the most recent allocation p (old bytes) keeping its first keep bytes. */
static inline void fh_json_arena_trim(fh_json_doc *d, void *p, size_t old, size_t keep)
{
    fh_json_block *b = d->cur;
    if (b && (unsigned char *)p + old == (unsigned char *)b->data + b->used)
        b->used -= old - keep;
}

/* Equal lengths first, then the first byte, before paying for a memcmp call: most keys that
 * share a length still differ there. */
static inline int fh_json_same_bytes(const char *a, const char *b, size_t n)
{
    if (n > 16)
        return memcmp(a, b, n) == 0;
    for (size_t i = 0; i < n; i++) /* keys are short: cheaper than a call */
        if (a[i] != b[i])
            return 0;
    return 1;
}

static inline int fh_json_same_str(const fh_jv *a, const fh_jv *b)
{
    return a->n == b->n && fh_json_same_bytes(a->u.s, b->u.s, a->n);
}

#endif
