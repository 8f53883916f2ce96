#include "fh_event.h"

#include "fh_jscan.h"
#include "fh_schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Generated at build time from schemas/ by tools/embed (see Makefile). */
struct fh_embedded_file {
    const char *name;
    const char *text;
};
extern const struct fh_embedded_file fh_embedded_schemas[];
extern const size_t fh_embedded_schemas_count;

static const char *const type_names[FH_EV__COUNT] = {
    "change.new",
    "buildrequest.new",
    "buildrequest.claimed",
    "buildrequest.unclaimed",
    "buildrequest.complete",
    "build.started",
    "build.updated",
    "build.finished",
    "step.started",
    "step.finished",
    "log.new",
    "log.finished",
    "log.chunk",
    "property.set",
    "worker.connected",
    "worker.disconnected",
    "master.started",
    "master.stopped",
    "test.result_set",
    "test.results",
    "builder.broken",
    "builder.fixed",
    "lkgr.advanced",
    "request.stale",
    "test.flaky",
};

#define EVENT_SCHEMA_URI "urn:firehose:v1:event"

struct fh_contract {
    fh_schema_registry *reg;
    fh_schema *event;
};

static int json_int(const json_t *v, long long *out);

const char *fh_event_type_name(int type)
{
    return type >= 0 && type < FH_EV__COUNT ? type_names[type] : NULL;
}

int fh_event_type_parse(const char *name)
{
    for (int i = 0; i < FH_EV__COUNT; i++)
        if (strcmp(type_names[i], name) == 0)
            return i;
    return -1;
}

size_t fh_contract_schema_count(void)
{
    return fh_embedded_schemas_count;
}

const char *fh_contract_schema_name(size_t i)
{
    return i < fh_embedded_schemas_count ? fh_embedded_schemas[i].name : NULL;
}

const char *fh_contract_schema_text(size_t i)
{
    return i < fh_embedded_schemas_count ? fh_embedded_schemas[i].text : NULL;
}

fh_err fh_contract_load(fh_contract **out, char *errbuf, size_t errsize)
{
    fh_err rc = FH_OK;
    fh_contract *c = calloc(1, sizeof(*c));
    if (!c || !(c->reg = fh_schema_registry_new())) {
        rc = FH_ERR_NOMEM;
        goto err;
    }
    for (size_t i = 0; i < fh_embedded_schemas_count; i++) {
        json_error_t jerr;
        json_t *doc = json_loads(fh_embedded_schemas[i].text, 0, &jerr);
        if (!doc) {
            rc = fh_errf(errbuf, errsize, FH_ERR_PARSE, "%s:%d: %s", fh_embedded_schemas[i].name,
                         jerr.line, jerr.text);
            goto err;
        }
        rc = fh_schema_registry_add(c->reg, doc, fh_embedded_schemas[i].name, errbuf, errsize);
        json_decref(doc);
        if (rc)
            goto err;
    }
    rc = fh_schema_compile(c->reg, EVENT_SCHEMA_URI, &c->event, errbuf, errsize);
    if (rc)
        goto err;
    *out = c;
    return FH_OK;
err:
    fh_contract_free(c);
    *out = NULL;
    return rc;
}

void fh_contract_free(fh_contract *c)
{
    if (!c)
        return;
    fh_schema_registry_free(c->reg);
    free(c);
}

fh_err fh_event_from_json(const fh_contract *c, json_t *root, fh_event *ev, char *errbuf,
                          size_t errsize)
{
    fh_schema_error serr;
    memset(ev, 0, sizeof(*ev));
    if (!fh_schema_validate(c->event, root, &serr)) {
        if (serr.path[0])
            return fh_errf(errbuf, errsize, FH_ERR_SCHEMA, "%s: %s", serr.path, serr.message);
        return fh_errf(errbuf, errsize, FH_ERR_SCHEMA, "%s", serr.message);
    }
    /* The schema guarantees these members and their types. */
    ev->root = json_incref(root);
    ev->data = json_object_get(root, "data");
    ev->type = (fh_event_type)fh_event_type_parse(json_string_value(json_object_get(root, "type")));
    ev->id = json_string_value(json_object_get(root, "id"));
    ev->master = json_string_value(json_object_get(root, "master"));
    if (json_int(json_object_get(root, "seq"), &ev->seq))
        ev->seq = 0;
    if (fh_event_int(ev, "buildrequestid", &ev->buildrequestid))
        ev->buildrequestid = 0;
    return FH_OK;
}

fh_err fh_event_decode(const fh_contract *c, const char *buf, size_t len, size_t max_bytes,
                       fh_event *ev, char *errbuf, size_t errsize)
{
    /* The same parser and check as fh_event_check (the ingest path): jansson alone would refuse
     * what fh_json accepts (an integer past int64 in a member the contract leaves open), so a
     * record the broker let through would not decode here. */
    fh_json_doc doc;
    fh_event_view view;
    memset(ev, 0, sizeof(*ev));
    fh_json_doc_init(&doc, FH_EVENT_DOC_CAP(max_bytes));
    fh_err rc = fh_event_check(c, &doc, buf, len, max_bytes, &view, errbuf, errsize);
    if (!rc) {
        json_t *root = fh_jv_to_jansson(view.root);
        if (!root) {
            rc = fh_errf(errbuf, errsize, FH_ERR_NOMEM, "out of memory");
        } else {
            ev->root = root; /* the reference fh_jv_to_jansson returned */
            ev->data = json_object_get(root, "data");
            ev->type = view.type;
            ev->id = json_string_value(json_object_get(root, "id"));
            ev->master = json_string_value(json_object_get(root, "master"));
            ev->seq = view.seq;
            ev->buildrequestid = view.buildrequestid;
        }
    }
    fh_json_doc_free(&doc);
    return rc;
}

void fh_event_clear(fh_event *ev)
{
    json_decref(ev->root);
    memset(ev, 0, sizeof(*ev));
}

fh_topic_kind fh_event_type_topic(fh_event_type type)
{
    switch (type) {
    case FH_EV_LOG_NEW:
    case FH_EV_LOG_FINISHED:
    case FH_EV_LOG_CHUNK:
    case FH_EV_TEST_RESULTS: /* up to 500 results a chunk: bulk, like log.chunk */
        return FH_TOPIC_LOGS;
    case FH_EV_BUILDER_BROKEN:
    case FH_EV_BUILDER_FIXED:
    case FH_EV_LKGR_ADVANCED:
    case FH_EV_REQUEST_STALE:
    case FH_EV_TEST_FLAKY:
        return FH_TOPIC_DERIVED;
    default:
        return FH_TOPIC_EVENTS;
    }
}

fh_topic_kind fh_event_topic(const fh_event *ev)
{
    return fh_event_type_topic(ev->type);
}

fh_topic_kind fh_event_view_topic(const fh_event_view *ev)
{
    return fh_event_type_topic(ev->type);
}

const char *fh_event_str(const fh_event *ev, const char *field)
{
    return json_string_value(json_object_get(ev->data, field));
}

int fh_event_int(const fh_event *ev, const char *field, long long *out)
{
    return json_int(json_object_get(ev->data, field), out);
}

static int json_int(const json_t *v, long long *out)
{
    if (json_is_real(v)) {
        /* JSON Schema counts 5.0 and 5e0 as integers, and jansson keeps them as reals. */
        double d = json_real_value(v);
        if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) ||
            d != (double)(long long)d)
            return -1;
        *out = (long long)d;
        return 0;
    }
    if (!json_is_integer(v))
        return -1;
    *out = json_integer_value(v);
    return 0;
}

/* The partition key of the contract (docs/events.md, "Topics and keys"). have_id says whether
 * id holds the changeid (change.new) or workerid (worker.*); name is data.name or NULL. */
static size_t key_format(fh_event_type type, long long buildrequestid, int have_id, long long id,
                         const char *name, const char *master, char *buf, size_t size)
{
    int n;
    if (buildrequestid > 0)
        n = snprintf(buf, size, "buildrequest/%lld", buildrequestid);
    else if (type == FH_EV_CHANGE_NEW && have_id)
        n = snprintf(buf, size, "change/%lld", id);
    else if ((type == FH_EV_WORKER_CONNECTED || type == FH_EV_WORKER_DISCONNECTED) && have_id)
        n = snprintf(buf, size, "worker/%lld", id);
    else
        n = snprintf(buf, size, "master/%s", name ? name : master);
    if (n < 0)
        return 0;
    return (size_t)n < size ? (size_t)n : size - 1;
}

static const char *id_field(fh_event_type type)
{
    if (type == FH_EV_CHANGE_NEW)
        return "changeid";
    if (type == FH_EV_WORKER_CONNECTED || type == FH_EV_WORKER_DISCONNECTED)
        return "workerid";
    return NULL;
}

size_t fh_event_key(const fh_event *ev, char *buf, size_t size)
{
    long long id = 0;
    const char *f = id_field(ev->type);
    int have_id = f && fh_event_int(ev, f, &id) == 0;
    return key_format(ev->type, ev->buildrequestid, have_id, id, fh_event_str(ev, "name"),
                      ev->master, buf, size);
}

size_t fh_event_view_key(const fh_event_view *ev, char *buf, size_t size)
{
    int64_t id = 0;
    const char *f = id_field(ev->type);
    int have_id = f && fh_jv_integer(fh_jv_get(ev->data, f), &id) == 0;
    return key_format(ev->type, ev->buildrequestid, have_id, id,
                      fh_jv_str(fh_jv_get(ev->data, "name"), NULL), ev->master, buf, size);
}

fh_err fh_event_check(const fh_contract *c, fh_json_doc *doc, const char *buf, size_t len,
                      size_t max_bytes, fh_event_view *ev, char *errbuf, size_t errsize)
{
    char perr[192];
    const fh_jv *root;
    fh_schema_error serr;
    int64_t n;
    memset(ev, 0, sizeof(*ev));
    if (len > max_bytes)
        return fh_errf(errbuf, errsize, FH_ERR_TOOBIG,
                       "record is %zu bytes, over the %zu-byte limit", len, max_bytes);
    fh_json_doc_reset(doc);
    fh_err rc = fh_json_parse(doc, buf, len, 0, &root, perr, sizeof(perr));
    if (rc == FH_ERR_PARSE)
        return fh_errf(errbuf, errsize, rc, "not JSON: %s", perr);
    if (rc)
        return fh_errf(errbuf, errsize, rc, "%s", perr);
    if (!fh_schema_validate_jv(c->event, root, &serr)) {
        if (serr.path[0])
            return fh_errf(errbuf, errsize, FH_ERR_SCHEMA, "%s: %s", serr.path, serr.message);
        return fh_errf(errbuf, errsize, FH_ERR_SCHEMA, "%s", serr.message);
    }
    /* The schema guarantees these members and their types. */
    ev->root = root;
    ev->data = fh_jv_get(root, "data");
    ev->type = (fh_event_type)fh_event_type_parse(fh_jv_str(fh_jv_get(root, "type"), NULL));
    ev->id = fh_jv_str(fh_jv_get(root, "id"), NULL);
    ev->master = fh_jv_str(fh_jv_get(root, "master"), NULL);
    if (fh_jv_integer(fh_jv_get(root, "seq"), &n) == 0)
        ev->seq = n;
    if (fh_jv_integer(fh_jv_get(ev->data, "buildrequestid"), &n) == 0)
        ev->buildrequestid = n;
    return FH_OK;
}

int fh_event_num(const fh_event *ev, const char *field, double *out)
{
    json_t *v = json_object_get(ev->data, field);
    if (!json_is_number(v))
        return -1;
    *out = json_number_value(v);
    return 0;
}

int fh_event_bool(const fh_event *ev, const char *field, int *out)
{
    json_t *v = json_object_get(ev->data, field);
    if (!json_is_boolean(v))
        return -1;
    *out = json_is_true(v);
    return 0;
}

static int dump_cb(const char *buf, size_t size, void *data)
{
    return fh_buf_append(data, buf, size);
}

int fh_event_member_json(const fh_event *ev, const char *field, fh_buf *out)
{
    json_t *v = json_object_get(ev->data, field);
    if (!v)
        return fh_buf_append(out, "null", 4);
    return json_dump_callback(v, dump_cb, out, JSON_COMPACT | JSON_ENCODE_ANY);
}

int fh_event_peek_type(const char *p, size_t n)
{
    const char *v, *vend;
    char name[32];
    if (fh_jscan_member(p, p + n, "type", 4, &v, &vend) != 1 ||
        fh_jscan_str(v, vend, name, sizeof(name)) < 0)
        return -1;
    return fh_event_type_parse(name);
}

int fh_event_from_view(const fh_event_view *ev, fh_event *out)
{
    memset(out, 0, sizeof(*out));
    if (!(out->root = fh_jv_to_jansson(ev->root)))
        return -1;
    out->data = json_object_get(out->root, "data");
    out->type = ev->type;
    out->id = json_string_value(json_object_get(out->root, "id"));
    out->master = json_string_value(json_object_get(out->root, "master"));
    out->seq = ev->seq;
    out->buildrequestid = ev->buildrequestid;
    return 0;
}

const char *fh_event_view_str(const fh_event_view *ev, const char *field)
{
    return fh_jv_str(fh_jv_get(ev->data, field), NULL);
}

int fh_event_view_int(const fh_event_view *ev, const char *field, long long *out)
{
    int64_t v;
    if (fh_jv_integer(fh_jv_get(ev->data, field), &v))
        return -1;
    *out = v;
    return 0;
}

int fh_event_view_num(const fh_event_view *ev, const char *field, double *out)
{
    const fh_jv *v = fh_jv_get(ev->data, field);
    if (!v || (fh_jv_type(v) != FH_JV_INT && fh_jv_type(v) != FH_JV_REAL))
        return -1;
    *out = fh_jv_number(v);
    return 0;
}

int fh_event_view_bool(const fh_event_view *ev, const char *field, int *out)
{
    const fh_jv *v = fh_jv_get(ev->data, field);
    if (!v || (fh_jv_type(v) != FH_JV_TRUE && fh_jv_type(v) != FH_JV_FALSE))
        return -1;
    *out = fh_jv_type(v) == FH_JV_TRUE;
    return 0;
}

int fh_event_view_member_json(const fh_event_view *ev, const char *field, fh_buf *out)
{
    const fh_jv *v = fh_jv_get(ev->data, field);
    if (!v)
        return fh_buf_append(out, "null", 4);
    /* only the member goes through jansson, so its text is exactly fh_event_member_json's */
    json_t *j = fh_jv_to_jansson(v);
    if (!j)
        return -1;
    int rc = json_dump_callback(j, dump_cb, out, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    return rc;
}

int fh_event_to_json(const fh_event *ev, fh_buf *out)
{
    return json_dump_callback(ev->root, dump_cb, out, JSON_COMPACT);
}
