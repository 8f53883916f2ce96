/* The route matcher (lib/fh_route), moved out of broker/http.c unchanged: what a "{}" segment
 * takes, and the limits (parameters, scratch room) past which a path does not match. */
#include "fh_route.h"
#include "fh_test.h"

#include <string.h>

static int match(const char *pattern, const char *path, const char **params)
{
    static char scratch[512];
    return fh_route_match(pattern, path, params, 4, scratch, sizeof(scratch));
}

TEST(route_literal_and_segments)
{
    const char *p[4] = {0};
    CHECK(match("/api/v1/builds", "/api/v1/builds", p));
    CHECK(!match("/api/v1/builds", "/api/v1/builds/", p));
    CHECK(!match("/api/v1/builds", "/api/v1/build", p));
    CHECK(match("/api/v1/builds/{}", "/api/v1/builds/51873", p));
    CHECK_STR(p[0], "51873");
    CHECK(!match("/api/v1/builds/{}", "/api/v1/builds/", p));
    CHECK(!match("/api/v1/builds/{}", "/api/v1/builds", p));
    CHECK(!match("/api/v1/builds/{}", "/api/v1/builds/1/x", p));
    CHECK(match("/api/v1/webhooks/{}/deliveries/{}/redeliver",
                "/api/v1/webhooks/w1/deliveries/42/redeliver", p));
    CHECK_STR(p[0], "w1");
    CHECK_STR(p[1], "42");
    CHECK(!match("/api/v1/webhooks/{}/deliveries/{}", "/api/v1/webhooks//deliveries/42", p));
    /* "{}" takes the whole rest of the segment: a literal after it in the same segment never
     * matches; a literal before it is a prefix */
    CHECK(!match("/a/{}x", "/a/bx", p));
    CHECK(match("/a/v{}", "/a/v12", p));
    CHECK_STR(p[0], "12");
    CHECK(!match("/a/v{}", "/a/v", p));
    /* a lone brace is literal */
    CHECK(match("/a/{", "/a/{", p));
    CHECK(!match("/a/{", "/a/b", p));
}

TEST(route_limits_refuse_the_match)
{
    const char *p[4] = {0};
    char scratch[8];
    CHECK(fh_route_match("/{}/{}", "/abc/def", p, 2, scratch, sizeof(scratch)));
    CHECK_STR(p[0], "abc");
    CHECK_STR(p[1], "def");
    CHECK(!fh_route_match("/{}/{}", "/abc/defg", p, 2, scratch, sizeof(scratch)));
    CHECK(!fh_route_match("/{}/{}", "/a/b", p, 1, scratch, sizeof(scratch)));
    CHECK(fh_route_match("/x", "/x", p, 0, scratch, 0));
}
