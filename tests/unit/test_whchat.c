/* Chat bodies (slack, matrix): each message type says who, what and where in one line, text from
 * events is escaped for mrkdwn and HTML (a builder named "<b>&" must not become markup or break
 * a link), noise types give no body, and a type the renderer does not know still gets a line. */
#include "fh_test.h"
#include "fh_whchat.h"
#include "fh_whformat.h"

#include <jansson.h>
#include <string.h>

/* An event of type with data given as JSON text. type may be one the contract does not know. */
static fh_event make(const char *type, const char *data)
{
    fh_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.root = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", "ev-1", "type", type, "source",
                        "buildbot://m1", "time", "2026-11-22T05:00:00.000Z", "master", "m1");
    json_object_set_new(ev.root, "data", json_loads(data, 0, NULL));
    ev.data = json_object_get(ev.root, "data");
    int t = fh_event_type_parse(type);
    ev.type = t >= 0 ? (fh_event_type)t : FH_EV__COUNT;
    ev.id = "ev-1";
    ev.master = "m1";
    ev.buildrequestid = 42;
    return ev;
}

/* Renders ev in format f and returns the parsed body (NULL when it is not one JSON object). */
static json_t *render(int f, const fh_event *ev)
{
    fh_buf b;
    const char *v;
    fh_buf_init(&b, 1 << 16);
    fh_err rc = fh_wh_render(f, ev, 0, &b, &v);
    json_t *j = rc ? NULL : json_loadb(b.data, b.len, 0, NULL);
    fh_buf_free(&b);
    return j;
}

static const char *member(json_t *j, const char *name)
{
    return json_string_value(json_object_get(j, name));
}

#define FAILED_BUILD                                                                               \
    "{\"buildrequestid\":42,\"buildid\":7,\"builder\":\"linux <x64> & co\",\"builderid\":1,"       \
    "\"branch\":\"main\",\"revision\":\"3f9c2a7e5b1d4c8f9a0e6b2d7c1f4a8e9b3d5c70\","               \
    "\"repository\":\"r\",\"project\":\"p\",\"codebase\":\"\",\"owner\":\"Alice <a@x.org>\","      \
    "\"number\":12,\"complete_at\":1.5,\"results\":2,\"state_string\":\"failed \\\"test\\\"\","    \
    "\"duration_s\":3,\"url\":\"https://ci.example.org/b/7?a=1&b=2|x\"}"

TEST(whchat_slack_build_finished_is_escaped_mrkdwn)
{
    fh_event ev = make("build.finished", FAILED_BUILD);
    CHECK(fh_wh_body_count(FH_WH_SLACK, &ev) == 1);
    CHECK(fh_wh_format_parse("slack") == FH_WH_SLACK);
    CHECK_STR(fh_wh_format_content_type(FH_WH_SLACK), "application/json");
    json_t *j = render(FH_WH_SLACK, &ev);
    CHECK(j != NULL);
    CHECK_STR(
        member(j, "text"),
        "*linux &lt;x64&gt; &amp; co* #12 *failure* on `main` at `3f9c2a7e5b1d` (Alice "
        "&lt;a@x.org&gt;): failed \"test\" <https://ci.example.org/b/7?a=1&amp;b=2%7Cx|build>");
    json_t *block = json_array_get(json_object_get(j, "blocks"), 0);
    CHECK_STR(member(block, "type"), "section");
    CHECK_STR(member(json_object_get(block, "text"), "type"), "mrkdwn");
    CHECK_STR(member(json_object_get(block, "text"), "text"), member(j, "text"));
    json_decref(j);
    json_decref(ev.root);
}

TEST(whchat_matrix_build_finished_is_escaped_html)
{
    fh_event ev = make("build.finished", FAILED_BUILD);
    json_t *j = render(FH_WH_MATRIX, &ev);
    CHECK(j != NULL);
    CHECK_STR(member(j, "msgtype"), "m.text");
    CHECK_STR(member(j, "format"), "org.matrix.custom.html");
    CHECK_STR(member(j, "body"),
              "linux <x64> & co #12 failure on main at 3f9c2a7e5b1d (Alice "
              "<a@x.org>): failed \"test\" https://ci.example.org/b/7?a=1&b=2|x");
    CHECK_STR(member(j, "formatted_body"),
              "<b>linux &lt;x64&gt; &amp; co</b> #12 <b>failure</b> on <code>main</code> at "
              "<code>3f9c2a7e5b1d</code> (Alice &lt;a@x.org&gt;): failed &quot;test&quot; <a "
              "href=\"https://ci.example.org/b/7?a=1&amp;b=2|x\">build</a>");
    json_decref(j);
    json_decref(ev.root);
}

TEST(whchat_each_worthwhile_type_has_a_line)
{
    static const struct {
        const char *type, *data, *slack;
    } cases[] = {
        {"build.started",
         "{\"builder\":\"mac\",\"number\":3,\"branch\":\"main\",\"revision\":\"\",\"owner\":\"\","
         "\"worker\":\"w-1\"}",
         "*mac* #3 started on `main` on worker w-1"},
        {"buildrequest.new", "{\"builder\":\"mac\",\"branch\":\"\",\"revision\":\"abc\"}",
         "*mac* request 42 queued at `abc`"},
        {"buildrequest.complete", "{\"builder\":\"mac\",\"results\":6}",
         "*mac* request 42 complete: *cancelled*"},
        {"step.finished",
         "{\"builder\":\"mac\",\"buildid\":9,\"name\":\"compile\",\"results\":0,"
         "\"state_string\":\"compile done\"}",
         "*mac* build 9 step `compile` *success*: compile done"},
        {"change.new",
         "{\"changeid\":5,\"author\":\"Bob\",\"branch\":\"main\",\"revision\":\"0123456789abcdef\","
         "\"comments\":\"fix <it>\\nlong body\",\"revlink\":\"http://git/c/5\"}",
         "change 5 on `main` at `0123456789ab` (Bob): fix &lt;it&gt; <http://git/c/5|change>"},
        {"worker.connected", "{\"name\":\"w-1\"}", "worker *w-1* connected to m1"},
        {"worker.disconnected", "{\"name\":\"w-1\"}", "worker *w-1* disconnected from m1"},
        {"master.stopped", "{}", "master *m1* stopped"},
        /* not a v1 type: the generic line, and only http(s) links */
        {"deploy.done",
         "{\"builder\":\"linux\",\"branch\":\"main\",\"revision\":\"abc\",\"owner\":\"\","
         "\"url\":\"javascript:alert(1)\"}",
         "*deploy.done* on *linux* on `main` at `abc`"},
        /* the derived events */
        {"builder.fixed",
         "{\"builder\":\"linux\",\"branch\":\"main\",\"revision\":\"0123456789abcdef\","
         "\"owner\":\"bob\",\"buildid\":105,\"build\":{\"buildid\":105,\"number\":9},"
         "\"broken_since\":{\"buildid\":103,\"number\":7}}",
         "*linux* fixed on `main` at `0123456789ab` (bob) by build #9, broken since build #7"},
        {"lkgr.advanced",
         "{\"builder\":\"linux\",\"branch\":\"main\",\"old_revision\":\"aaaaaaaaaaaaaaaa\","
         "\"new_revision\":\"bbbbbbbbbbbbbbbb\"}",
         "last green of *main* advanced from `aaaaaaaaaaaa` to `bbbbbbbbbbbb`"},
        {"lkgr.advanced", "{\"branch\":\"main\",\"old_revision\":null,\"new_revision\":\"b1\"}",
         "last green of *main* advanced to `b1`"},
        {"request.stale",
         "{\"builder\":\"queue-x\",\"branch\":\"main\",\"revision\":\"\",\"owner\":\"\","
         "\"threshold_s\":5400}",
         "*queue-x* request 42 waiting over *90m* on `main`"},
        {"request.stale", "{\"builder\":\"q\",\"threshold_s\":7200}",
         "*q* request 42 waiting over *2h*"},
        {"test.flaky",
         "{\"builder\":\"linux\",\"branch\":\"main\",\"revision\":\"r1\",\"owner\":\"\","
         "\"test\":\"net::<retry> & back\",\"passed\":{\"buildid\":50,\"number\":null},"
         "\"failed\":{\"buildid\":51,\"number\":4}}",
         "test `net::&lt;retry&gt; &amp; back` flaky on *linux* on `main` at `r1`: passed in build "
         "#50, failed in build #4"},
        {"test.flaky",
         "{\"builder\":\"linux\",\"branch\":\"main\",\"revision\":\"r1\",\"test\":null,"
         "\"passed\":{\"buildid\":50,\"number\":3},\"failed\":{\"buildid\":51,\"number\":4}}",
         "flaky: *linux* on `main` at `r1`: passed in build #3, failed in build #4"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fh_event ev = make(cases[i].type, cases[i].data);
        CHECK(fh_wh_body_count(FH_WH_SLACK, &ev) == 1 && fh_wh_body_count(FH_WH_MATRIX, &ev) == 1);
        json_t *j = render(FH_WH_SLACK, &ev);
        CHECK_STR(member(j, "text"), cases[i].slack);
        json_decref(j);
        j = render(FH_WH_MATRIX, &ev);
        CHECK(member(j, "body") && member(j, "formatted_body"));
        json_decref(j);
        json_decref(ev.root);
    }
}

TEST(whchat_noise_types_give_no_body)
{
    static const char *const quiet[] = {"build.updated",
                                        "buildrequest.claimed",
                                        "buildrequest.unclaimed",
                                        "step.started",
                                        "log.new",
                                        "log.finished",
                                        "property.set"};
    for (size_t i = 0; i < sizeof(quiet) / sizeof(quiet[0]); i++) {
        fh_event ev = make(quiet[i], "{\"builder\":\"x\"}");
        CHECK(fh_wh_body_count(FH_WH_SLACK, &ev) == 0);
        CHECK(fh_wh_body_count(FH_WH_MATRIX, &ev) == 0);
        fh_buf b;
        const char *v;
        fh_buf_init(&b, 4096);
        CHECK(fh_wh_render(FH_WH_SLACK, &ev, 0, &b, &v) != FH_OK);
        fh_buf_free(&b);
        json_decref(ev.root);
    }
}

TEST(whchat_long_text_is_cut_on_a_character_boundary)
{
    char data[1024], text[600];
    size_t o = 0;
    while (o + 2 < 500) {
        memcpy(text + o, "\xc3\xa9", 2); /* é, two bytes each */
        o += 2;
    }
    text[o] = '\0';
    snprintf(data, sizeof(data), "{\"builder\":\"b\",\"results\":2,\"state_string\":\"x%s\"}",
             text);
    fh_event ev = make("build.finished", data);
    json_t *j = render(FH_WH_MATRIX, &ev);
    const char *body = member(j, "body");
    CHECK(body != NULL);
    const char *st = body ? strstr(body, ": x") : NULL;
    CHECK(st && strlen(st + 2) == FH_CHAT_TEXT_MAX - 1); /* "x" + 99 two-byte characters */
    json_decref(j);
    json_decref(ev.root);
}

TEST(whchat_escapers)
{
    fh_buf b;
    fh_buf_init(&b, 256);
    CHECK(fh_chat_escape_slack(&b, "a<b>&c*", 7) == 0);
    CHECK(b.len == 17 && memcmp(b.data, "a&lt;b&gt;&amp;c*", 17) == 0);
    fh_buf_reset(&b);
    CHECK(fh_chat_escape_html(&b, "\"'<&>", 5) == 0);
    CHECK(b.len == 24 && memcmp(b.data, "&quot;&#39;&lt;&amp;&gt;", 24) == 0);
    fh_buf_free(&b);
}

#define BROKEN                                                                                     \
    "{\"buildrequestid\":42,\"buildid\":103,\"builder\":\"linux & <co>\",\"branch\":\"main\","     \
    "\"revision\":\"4444444444444444\",\"owner\":\"\",\"url\":\"https://ci/b/103\","               \
    "\"build\":{\"buildid\":103,\"number\":12},\"suspects_truncated\":false,\"suspects\":["        \
    "{\"revision\":\"1111111111111111\",\"author\":\"Dev 1 <d1@x.org>\",\"owners\":[]},"           \
    "{\"revision\":\"2222222222222222\",\"author\":null,\"owners\":[\"o1\",\"o2\",\"o3\"]},"       \
    "{\"revision\":\"3333333333333333\",\"author\":\"Dev 3\",\"owners\":[\"Dev 3\",\"x&y\"]},"     \
    "{\"revision\":\"4444444444444444\",\"author\":\"Dev 4\",\"owners\":[]},"                      \
    "{\"revision\":\"5555555555555555\",\"author\":\"Dev 5\",\"owners\":[]}]}"

/* builder.broken names the failing build and the first suspects with who they are, then how many
 * more; in both formats, escaped. */
TEST(whchat_builder_broken_names_suspects_capped)
{
    fh_event ev = make("builder.broken", BROKEN);
    json_t *j = render(FH_WH_SLACK, &ev);
    CHECK_STR(member(j, "text"),
              "*linux &amp; &lt;co&gt;* broke on `main` at `444444444444`: build #12; suspects "
              "`111111111111` by Dev 1 &lt;d1@x.org&gt;, `222222222222` (o1, o2), `333333333333` "
              "by Dev 3 (x&amp;y) and 2 more <https://ci/b/103|build>");
    json_decref(j);
    j = render(FH_WH_MATRIX, &ev);
    CHECK_STR(member(j, "body"),
              "linux & <co> broke on main at 444444444444: build #12; suspects 111111111111 by "
              "Dev 1 <d1@x.org>, 222222222222 (o1, o2), 333333333333 by Dev 3 (x&y) and 2 more "
              "https://ci/b/103");
    /* a variable: the message of a failed CHECK_STR would not hold the literal */
    const char *html =
        "<b>linux &amp; &lt;co&gt;</b> broke on <code>main</code> at "
        "<code>444444444444</code>: build #12; suspects <code>111111111111</code> by Dev 1 "
        "&lt;d1@x.org&gt;, <code>222222222222</code> (o1, o2), <code>333333333333</code> by "
        "Dev 3 (x&amp;y) and 2 more <a href=\"https://ci/b/103\">build</a>";
    CHECK_STR(member(j, "formatted_body"), html);
    json_decref(j);
    json_decref(ev.root);
    ev = make("builder.broken", "{\"builder\":\"b\",\"build\":{\"buildid\":7},\"suspects\":"
                                "[{\"revision\":\"r9\",\"author\":null,\"owners\":[]}]}");
    j = render(FH_WH_SLACK, &ev);
    CHECK_STR(member(j, "text"), "*b* broke: build #7; suspect `r9`");
    json_decref(j);
    json_decref(ev.root);
}
