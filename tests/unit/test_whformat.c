/* Webhook bodies: the firehose and CloudEvents formats carry the event unchanged, and the
 * CDEvents mapping (docs/webhooks.md) gives the documented types, subjects and outcomes. */
#include "fh_test.h"
#include "fh_whformat.h"

#include <jansson.h>
#include <string.h>

static fh_event make(const char *type, int results)
{
    fh_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.root = json_pack("{s:s, s:s, s:s, s:s, s:{s:i, s:i, s:s, s:i, s:i, s:s, s:i, s:s}}", "id",
                        "ev-1", "type", type, "source", "buildbot://m1", "time",
                        "2026-11-22T05:00:00.000Z", "data", "buildrequestid", 42, "buildid", 7,
                        "builder", "linux", "results", results, "stepid", 70, "name", "compile",
                        "number", 3, "state_string", "failed compile");
    ev.data = json_object_get(ev.root, "data");
    ev.type = (fh_event_type)fh_event_type_parse(type);
    ev.id = "ev-1";
    ev.buildrequestid = 42;
    return ev;
}

static json_t *render(int f, const fh_event *ev, int i, const char **variant)
{
    fh_buf b;
    fh_buf_init(&b, 1 << 20);
    fh_err rc = fh_wh_render(f, ev, i, &b, variant);
    json_t *j = rc ? NULL : json_loadb(b.data, b.len, 0, NULL);
    fh_buf_free(&b);
    return j;
}

TEST(whformat_firehose_and_cloudevents_carry_the_event)
{
    fh_event ev = make("build.finished", 0);
    const char *v;
    json_t *j = render(FH_WH_FIREHOSE, &ev, 0, &v);
    CHECK(j && *v == '\0');
    CHECK_STR(json_string_value(json_object_get(j, "type")), "build.finished");
    CHECK_STR(json_string_value(json_object_get(j, "timestamp")), "2026-11-22T05:00:00.000Z");
    CHECK(json_equal(json_object_get(j, "data"), ev.root));
    json_decref(j);
    j = render(FH_WH_CLOUDEVENTS, &ev, 0, &v);
    CHECK(j && json_equal(j, ev.root));
    json_decref(j);
    CHECK_STR(fh_wh_format_content_type(FH_WH_CLOUDEVENTS), "application/cloudevents+json");
    CHECK(fh_wh_format_parse("cdevents") == FH_WH_CDEVENTS && fh_wh_format_parse("xml") < 0);
    json_decref(ev.root);
}

TEST(whformat_cdevents_mapping)
{
    const char *v;
    fh_event ev = make("build.finished", 2);
    CHECK(fh_wh_body_count(FH_WH_CDEVENTS, &ev) == 2);
    json_t *b = render(FH_WH_CDEVENTS, &ev, 0, &v);
    CHECK_STR(v, "build");
    CHECK_STR(json_string_value(json_object_get(json_object_get(b, "context"), "type")),
              "dev.cdevents.build.finished.0.2.0");
    CHECK_STR(json_string_value(json_object_get(json_object_get(b, "context"), "specversion")),
              "0.4.1");
    CHECK_STR(json_string_value(json_object_get(json_object_get(b, "subject"), "id")), "builds/7");
    json_decref(b);
    json_t *p = render(FH_WH_CDEVENTS, &ev, 1, &v);
    CHECK_STR(v, "pipelinerun");
    json_t *subj = json_object_get(p, "subject");
    CHECK_STR(json_string_value(json_object_get(json_object_get(p, "context"), "type")),
              "dev.cdevents.pipelinerun.finished.0.2.0");
    CHECK_STR(json_string_value(json_object_get(subj, "type")), "pipelineRun");
    CHECK_STR(json_string_value(json_object_get(subj, "id")), "buildrequests/42");
    json_t *content = json_object_get(subj, "content");
    CHECK_STR(json_string_value(json_object_get(content, "outcome")), "failure");
    CHECK_STR(json_string_value(json_object_get(content, "pipelineName")), "linux");
    CHECK_STR(json_string_value(json_object_get(content, "errors")), "failed compile");
    CHECK_STR(json_string_value(json_object_get(json_object_get(p, "customData"), "id")), "ev-1");
    json_decref(p);
    json_decref(ev.root);

    ev = make("step.finished", 4);
    CHECK(fh_wh_body_count(FH_WH_CDEVENTS, &ev) == 1);
    json_t *t = render(FH_WH_CDEVENTS, &ev, 0, &v);
    CHECK_STR(v, "taskrun");
    CHECK_STR(json_string_value(json_object_get(json_object_get(t, "context"), "type")),
              "dev.cdevents.taskrun.finished.0.2.0");
    CHECK_STR(json_string_value(json_object_get(
                  json_object_get(json_object_get(t, "subject"), "content"), "outcome")),
              "error");
    json_decref(t);
    json_decref(ev.root);

    ev = make("build.finished", 1); /* WARNINGS is green */
    p = render(FH_WH_CDEVENTS, &ev, 1, &v);
    CHECK_STR(json_string_value(json_object_get(
                  json_object_get(json_object_get(p, "subject"), "content"), "outcome")),
              "success");
    json_decref(p);
    json_decref(ev.root);

    ev = make("property.set", 0);
    CHECK(fh_wh_body_count(FH_WH_CDEVENTS, &ev) == 0);
    CHECK(fh_wh_body_count(FH_WH_FIREHOSE, &ev) == 1);
    json_decref(ev.root);
}
