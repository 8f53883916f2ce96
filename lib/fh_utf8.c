#include "fh_utf8.h"

int fh_utf8_valid(const void *s, size_t n)
{
    fh_utf8_state st = {0, 0, 0};
    return fh_utf8_feed(&st, s, n) == 0 && st.need == 0;
}

int fh_utf8_feed(fh_utf8_state *st, const void *s, size_t n)
{
    const unsigned char *p = s;
    unsigned need = st->need, lo = st->lo, hi = st->hi;
    for (size_t i = 0; i < n; i++) {
        unsigned c = p[i];
        if (need == 0) {
            if (c < 0x80)
                continue;
            if (!(need = fh_utf8_lead(c, &lo, &hi)))
                return -1;
            need--;
            continue;
        }
        if (c < lo || c > hi)
            return -1;
        lo = 0x80;
        hi = 0xBF;
        need--;
    }
    st->need = (unsigned char)need;
    st->lo = (unsigned char)lo;
    st->hi = (unsigned char)hi;
    return 0;
}

size_t fh_utf8_count(const char *s, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            count++;
    return count;
}

size_t fh_utf8_cut(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    /* Back off continuation bytes (10xxxxxx) so the cut falls before a lead byte. */
    size_t k = max;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
        k--;
    return k;
}

size_t fh_utf8_put(unsigned char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}
