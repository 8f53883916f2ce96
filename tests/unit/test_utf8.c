/* fh_utf8 is the one UTF-8 check for the JSON parser, the JSON writers, the WebSocket parser and
 * the schema: these pin RFC 3629's edges (overlongs, surrogates, > U+10FFFF, truncation), and
 * that the incremental check agrees with the whole-buffer one wherever the text is split. */
#include "fh_test.h"
#include "fh_utf8.h"

#include <stdio.h>
#include <string.h>

typedef struct utf8_case {
    const char *s;
    size_t n;
    int valid;
} utf8_case;

#define C(lit, ok)                                                                                 \
    {                                                                                              \
        lit, sizeof(lit) - 1, ok                                                                   \
    }
static const utf8_case cases[] = {
    C("", 1),
    C("plain ascii", 1),
    C("a\0b", 1),                 /* NUL is a character */
    C("\xc3\xa9", 1),             /* U+00E9 */
    C("\xc2\x80", 1),             /* U+0080, smallest 2-byte */
    C("\xdf\xbf", 1),             /* U+07FF */
    C("\xe0\xa0\x80", 1),         /* U+0800, smallest 3-byte */
    C("\xed\x9f\xbf", 1),         /* U+D7FF, just below the surrogates */
    C("\xee\x80\x80", 1),         /* U+E000, just above them */
    C("\xef\xbf\xbf", 1),         /* U+FFFF */
    C("\xf0\x90\x80\x80", 1),     /* U+10000, smallest 4-byte */
    C("\xf4\x8f\xbf\xbf", 1),     /* U+10FFFF, the last code point */
    C("\xf0\x9f\x94\xa5", 1),     /* U+1F525 */
    C("\xc0\x80", 0),             /* overlong NUL */
    C("\xc1\xbf", 0),             /* overlong U+007F */
    C("\xe0\x80\x80", 0),         /* overlong 3-byte */
    C("\xe0\x9f\xbf", 0),         /* overlong U+07FF */
    C("\xf0\x80\x80\x80", 0),     /* overlong 4-byte */
    C("\xf0\x8f\xbf\xbf", 0),     /* overlong U+FFFF */
    C("\xed\xa0\x80", 0),         /* U+D800, a surrogate */
    C("\xed\xbf\xbf", 0),         /* U+DFFF */
    C("\xf4\x90\x80\x80", 0),     /* U+110000 */
    C("\xf5\x80\x80\x80", 0),     /* lead byte past U+10FFFF */
    C("\xff", 0),                 /* never in UTF-8 */
    C("\x80", 0),                 /* lone continuation */
    C("a\xbf", 0),                /* continuation after ASCII */
    C("\xc3", 0),                 /* truncated 2-byte */
    C("\xe2\x82", 0),             /* truncated 3-byte */
    C("\xf0\x9f\x94", 0),         /* truncated 4-byte */
    C("\xc3\x41", 0),             /* lead then ASCII */
    C("\xe2\x82\x41", 0),         /* bad third byte */
    C("\xf0\x9f\x94\xc3\xa9", 0), /* a lead where a continuation belongs */
};
#undef C

TEST(utf8_valid_rejects_overlongs_surrogates_and_past_u10ffff)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (fh_utf8_valid(cases[i].s, cases[i].n) != cases[i].valid) {
            char m[64];
            snprintf(m, sizeof(m), "fh_utf8_valid is wrong about case %zu", i);
            fh_test_fail(__FILE__, __LINE__, m);
        }
}

TEST(utf8_feed_agrees_with_valid_at_every_split)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const utf8_case *c = &cases[i];
        for (size_t cut = 0; cut <= c->n; cut++) {
            fh_utf8_state st = {0, 0, 0};
            int ok = fh_utf8_feed(&st, c->s, cut) == 0 &&
                     fh_utf8_feed(&st, c->s + cut, c->n - cut) == 0 && st.need == 0;
            CHECK(ok == c->valid);
        }
    }
    /* a prefix of a valid character is still owed bytes, not an error */
    fh_utf8_state st = {0, 0, 0};
    CHECK(fh_utf8_feed(&st, "\xf0\x9f", 2) == 0 && st.need == 2);
    CHECK(fh_utf8_feed(&st, "\x94\xa5", 2) == 0 && st.need == 0);
}

TEST(utf8_seq_measures_one_character_within_the_buffer)
{
    const unsigned char s[] = "\xf0\x9f\x94\xa5\xc3\xa9";
    CHECK(fh_utf8_seq(s, s + 6) == 4);
    CHECK(fh_utf8_seq(s + 4, s + 6) == 2);
    CHECK(fh_utf8_seq(s, s + 3) == 0); /* cut short by end */
    CHECK(fh_utf8_seq(s + 1, s + 6) == 0);
    const unsigned char sur[] = "\xed\xa0\x80";
    CHECK(fh_utf8_seq(sur, sur + 3) == 0);
}

TEST(utf8_count_counts_code_points)
{
    CHECK(fh_utf8_count("", 0) == 0);
    CHECK(fh_utf8_count("abc", 3) == 3);
    CHECK(fh_utf8_count("a\xc3\xa9", 3) == 2);
    CHECK(fh_utf8_count("\xf0\x9f\x94\xa5\xe2\x82\xac", 7) == 2);
}

TEST(utf8_cut_never_splits_a_character)
{
    CHECK(fh_utf8_cut("abc", 3, 10) == 3);
    CHECK(fh_utf8_cut("abc", 3, 2) == 2);
    CHECK(fh_utf8_cut("a\xc3\xa9", 3, 2) == 1); /* never half of é */
    CHECK(fh_utf8_cut("\xf0\x9f\x94\xa5z", 5, 3) == 0);
    CHECK(fh_utf8_cut("\xf0\x9f\x94\xa5z", 5, 4) == 4);
}

TEST(utf8_put_encodes_each_length_and_round_trips)
{
    static const unsigned cps[] = {0,      0x41,   0x7F,   0x80,    0x7FF,   0x800,
                                   0xD7FF, 0xE000, 0xFFFF, 0x10000, 0x10FFFF};
    unsigned char buf[4];
    CHECK(fh_utf8_put(buf, 0xE9) == 2 && memcmp(buf, "\xc3\xa9", 2) == 0);
    CHECK(fh_utf8_put(buf, 0x1F525) == 4 && memcmp(buf, "\xf0\x9f\x94\xa5", 4) == 0);
    for (size_t i = 0; i < sizeof(cps) / sizeof(cps[0]); i++) {
        size_t n = fh_utf8_put(buf, cps[i]);
        CHECK(n == (cps[i] < 0x80 ? 1u : cps[i] < 0x800 ? 2u : cps[i] < 0x10000 ? 3u : 4u));
        CHECK(fh_utf8_valid(buf, n));
        CHECK(fh_utf8_count((const char *)buf, n) == 1);
    }
}
