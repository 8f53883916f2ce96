#include "fh_whformat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fh_whchat.h"

static const char *const format_names[FH_WH__COUNT] = {"firehose", "cloudevents", "cdevents",
                                                       "slack", "matrix"};

const char *fh_wh_format_name(int f)
{
    return f >= 0 && f < FH_WH__COUNT ? format_names[f] : NULL;
}

int fh_wh_format_parse(const char *name)
{
    for (int i = 0; name && i < FH_WH__COUNT; i++)
        if (strcmp(format_names[i], name) == 0)
            return i;
    return -1;
}

const char *fh_wh_format_content_type(int f)
{
    return f == FH_WH_CLOUDEVENTS ? "application/cloudevents+json" : "application/json";
}

/* The mapping (docs/webhooks.md, "CDEvents"): subject kind, predicate and type per body. */
typedef struct cd_map {
    fh_event_type ev;
    const char *variant[FH_WH_MAX_BODIES];
    const char *type[FH_WH_MAX_BODIES];
} cd_map;

static const cd_map cd_maps[] = {
    {FH_EV_BUILDREQUEST_NEW,
     {"pipelinerun", "build"},
     {"dev.cdevents.pipelinerun.queued.0.2.0", "dev.cdevents.build.queued.0.2.0"}},
    {FH_EV_BUILD_STARTED,
     {"build", "pipelinerun"},
     {"dev.cdevents.build.started.0.2.0", "dev.cdevents.pipelinerun.started.0.2.0"}},
    {FH_EV_BUILD_FINISHED,
     {"build", "pipelinerun"},
     {"dev.cdevents.build.finished.0.2.0", "dev.cdevents.pipelinerun.finished.0.2.0"}},
    {FH_EV_STEP_STARTED, {"taskrun", NULL}, {"dev.cdevents.taskrun.started.0.2.0", NULL}},
    {FH_EV_STEP_FINISHED, {"taskrun", NULL}, {"dev.cdevents.taskrun.finished.0.2.0", NULL}},
};

static const cd_map *cd_find(const fh_event *ev)
{
    for (size_t i = 0; i < sizeof(cd_maps) / sizeof(cd_maps[0]); i++)
        if (cd_maps[i].ev == ev->type)
            return &cd_maps[i];
    return NULL;
}

int fh_wh_body_count(int f, const fh_event *ev)
{
    if (f == FH_WH_SLACK || f == FH_WH_MATRIX)
        return fh_chat_wanted(ev);
    if (f != FH_WH_CDEVENTS)
        return 1;
    const cd_map *m = cd_find(ev);
    return m ? (m->variant[1] ? 2 : 1) : 0;
}

const char *fh_cdevents_type(const fh_event *ev, int i)
{
    const cd_map *m = cd_find(ev);
    return m && i >= 0 && i < FH_WH_MAX_BODIES ? m->type[i] : NULL;
}

static const char *root_str(const fh_event *ev, const char *name)
{
    const char *s = json_string_value(json_object_get(ev->root, name));
    return s ? s : "";
}

/* Buildbot results to a CDEvents outcome: success, failure or error. */
static const char *outcome(long long results)
{
    switch (results) {
    case 0: /* SUCCESS */
    case 1: /* WARNINGS */
    case 3: /* SKIPPED */
        return "success";
    case 2: /* FAILURE */
    case 6: /* CANCELLED: the run did not succeed, and it was no infrastructure error */
        return "failure";
    default: /* EXCEPTION, RETRY */
        return "error";
    }
}

static const char *const results_names[] = {"success",   "warnings", "failure",  "skipped",
                                            "exception", "retry",    "cancelled"};

static fh_err render_cdevent(const fh_event *ev, const cd_map *m, int i, fh_buf *out)
{
    char id[300], sid[64], run[64];
    long long n, results = -1;
    const char *variant = m->variant[i];
    const char *builder = fh_event_str(ev, "builder");
    int has_results = fh_event_int(ev, "results", &results) == 0;
    json_t *content = json_object(), *custom = json_object();
    fh_err rc = FH_OK;

    snprintf(id, sizeof(id), "%s.%s", root_str(ev, "id"), variant);
    snprintf(run, sizeof(run), "buildrequests/%lld", ev->buildrequestid);
    if (strcmp(variant, "pipelinerun") == 0) {
        snprintf(sid, sizeof(sid), "%s", run);
        json_object_set_new(content, "pipelineName", json_string(builder ? builder : ""));
    } else if (strcmp(variant, "build") == 0) {
        if (fh_event_int(ev, "buildid", &n) == 0)
            snprintf(sid, sizeof(sid), "builds/%lld", n);
        else
            snprintf(sid, sizeof(sid), "%s", run);
    } else { /* taskrun */
        snprintf(sid, sizeof(sid), "steps/%lld", fh_event_int(ev, "stepid", &n) == 0 ? n : 0);
        const char *name = fh_event_str(ev, "name");
        json_object_set_new(content, "taskName", json_string(name ? name : ""));
        json_object_set_new(content, "pipelineRun", json_pack("{s:s}", "id", run));
    }
    if (has_results && strcmp(variant, "build") != 0) {
        json_object_set_new(content, "outcome", json_string(outcome(results)));
        if (strcmp(outcome(results), "success") != 0) {
            const char *st = fh_event_str(ev, "state_string");
            json_object_set_new(content, "errors",
                                json_string(st && *st                      ? st
                                            : results >= 0 && results <= 6 ? results_names[results]
                                                                           : "unknown"));
        }
    }
    /* Everything a consumer needs to join back to firehose, without a second request. */
    json_object_set_new(custom, "type", json_string(fh_event_type_name(ev->type)));
    json_object_set_new(custom, "id", json_string(root_str(ev, "id")));
    json_object_set(custom, "data", ev->data);
    json_t *doc = json_pack(
        "{s:{s:s, s:s, s:s, s:s, s:s}, s:{s:s, s:s, s:s, s:o}, s:o, s:s}", "context", "specversion",
        FH_CDEVENTS_SPEC, "id", id, "source", root_str(ev, "source"), "type", m->type[i],
        "timestamp", root_str(ev, "time"), "subject", "id", sid, "source", root_str(ev, "source"),
        "type",
        strcmp(variant, "pipelinerun") == 0 ? "pipelineRun"
        : strcmp(variant, "build") == 0     ? "build"
                                            : "taskRun",
        "content", content, "customData", custom, "customDataContentType", "application/json");
    if (!doc)
        return FH_ERR_NOMEM;
    char *text = json_dumps(doc, JSON_COMPACT);
    if (!text || fh_buf_append(out, text, strlen(text)))
        rc = text ? FH_ERR_TOOBIG : FH_ERR_NOMEM;
    free(text);
    json_decref(doc);
    return rc;
}

fh_err fh_wh_render(int f, const fh_event *ev, int i, fh_buf *out, const char **variant)
{
    *variant = "";
    switch (f) {
    case FH_WH_FIREHOSE:
        if (i != 0)
            return FH_ERR_INVAL;
        if (fh_buf_printf(out, "{\"type\":") ||
            fh_buf_json_str(out, fh_event_type_name(ev->type)) ||
            fh_buf_printf(out, ",\"timestamp\":") || fh_buf_json_str(out, root_str(ev, "time")) ||
            fh_buf_printf(out, ",\"data\":") || fh_event_to_json(ev, out) ||
            fh_buf_printf(out, "}"))
            return FH_ERR_TOOBIG;
        return FH_OK;
    case FH_WH_CLOUDEVENTS:
        if (i != 0)
            return FH_ERR_INVAL;
        return fh_event_to_json(ev, out) ? FH_ERR_TOOBIG : FH_OK;
    case FH_WH_CDEVENTS: {
        const cd_map *m = cd_find(ev);
        if (!m || i < 0 || i >= FH_WH_MAX_BODIES || !m->variant[i])
            return FH_ERR_INVAL;
        *variant = m->variant[i];
        return render_cdevent(ev, m, i, out);
    }
    case FH_WH_SLACK:
    case FH_WH_MATRIX:
        if (i != 0)
            return FH_ERR_INVAL;
        return fh_chat_render(f == FH_WH_SLACK ? FH_CHAT_SLACK : FH_CHAT_MATRIX, ev, out);
    default:
        return FH_ERR_INVAL;
    }
}
