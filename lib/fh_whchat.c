#include "fh_whchat.h"

#include <stdio.h>
#include <string.h>

/* A message is a short list of segments, each plain, bold or code, plus at most one link; the
 * two renderers turn the same list into mrkdwn or HTML, so both say the same thing. */
enum seg_style { SEG_PLAIN = 0, SEG_BOLD, SEG_CODE };

#define MAX_SEGS 64
#define MAX_NUMS 8
/* Suspects a builder.broken message names (then "and N more"), owners per suspect. */
#define CHAT_SUSPECTS 3
#define CHAT_OWNERS 2

typedef struct chat_msg {
    struct {
        const char *s;
        size_t n;
        enum seg_style style;
    } seg[MAX_SEGS];
    int nseg;
    char num[MAX_NUMS][32]; /* numbers the segments point into */
    int nnum;
    const char *link, *link_label;
} chat_msg;

static const char *const results_names[] = {"success",   "warnings", "failure",  "skipped",
                                            "exception", "retry",    "cancelled"};

/* Cuts s to at most max bytes at a UTF-8 character boundary, and at its first line break. */
static size_t cut(const char *s, size_t max)
{
    return fh_utf8_cut(s, strcspn(s, "\r\n"), max);
}

static void add(chat_msg *m, enum seg_style style, const char *s)
{
    if (!s || !*s || m->nseg >= MAX_SEGS)
        return;
    m->seg[m->nseg].s = s;
    m->seg[m->nseg].n = cut(s, FH_CHAT_TEXT_MAX);
    m->seg[m->nseg].style = style;
    m->nseg++;
}

/* Adds prefix and a number as plain text (kept in m). */
static void add_num(chat_msg *m, const char *prefix, long long v)
{
    if (m->nnum >= MAX_NUMS)
        return;
    snprintf(m->num[m->nnum], sizeof(m->num[0]), "%s%lld", prefix, v);
    add(m, SEG_PLAIN, m->num[m->nnum++]);
}

static const char *str(const fh_event *ev, const char *field)
{
    const char *s = fh_event_str(ev, field);
    return s && *s ? s : NULL;
}

/* A revision as code, cut to 12 characters (a commit id reads fine short). */
static void add_rev(chat_msg *m, const char *rev)
{
    if (!rev || !*rev)
        return;
    add(m, SEG_CODE, rev);
    if (m->nseg > 0 && m->seg[m->nseg - 1].s == rev && m->seg[m->nseg - 1].n > 12)
        m->seg[m->nseg - 1].n = 12;
}

/* " on `branch` at `rev12` (owner)": the context most messages end with. */
static void add_where(chat_msg *m, const fh_event *ev, const char *who_field)
{
    const char *branch = str(ev, "branch"), *rev = str(ev, "revision"), *who = str(ev, who_field);
    if (branch) {
        add(m, SEG_PLAIN, " on ");
        add(m, SEG_CODE, branch);
    }
    if (rev) {
        add(m, SEG_PLAIN, " at ");
        add_rev(m, rev);
    }
    if (who) {
        add(m, SEG_PLAIN, " (");
        add(m, SEG_PLAIN, who);
        add(m, SEG_PLAIN, ")");
    }
}

static const char *results_text(const fh_event *ev)
{
    long long r;
    if (fh_event_int(ev, "results", &r) || r < 0 || r > 6)
        return "unknown";
    return results_names[r];
}

/* An http(s) URL the event carries for people to follow, or NULL. */
static const char *link_of(const fh_event *ev, const char *field)
{
    const char *u = str(ev, field);
    return u && (strncmp(u, "https://", 8) == 0 || strncmp(u, "http://", 7) == 0) ? u : NULL;
}

/* The event's type name: the contract's, or the record's own for a type this code predates. */
static const char *type_name(const fh_event *ev)
{
    const char *t = fh_event_type_name(ev->type);
    if (!t)
        t = json_string_value(json_object_get(ev->root, "type"));
    return t ? t : "event";
}

int fh_chat_wanted(const fh_event *ev)
{
    switch ((int)ev->type) {
    case FH_EV_BUILD_UPDATED:
    case FH_EV_BUILDREQUEST_CLAIMED:
    case FH_EV_BUILDREQUEST_UNCLAIMED:
    case FH_EV_STEP_STARTED:
    case FH_EV_LOG_NEW:
    case FH_EV_LOG_FINISHED:
    case FH_EV_LOG_CHUNK:
    case FH_EV_PROPERTY_SET:
        return 0;
    default:
        return 1;
    }
}

/* A member of the object member obj of ev's data (NULL when either is missing). */
static json_t *sub(const fh_event *ev, const char *obj, const char *field)
{
    return json_object_get(json_object_get(ev->data, obj), field);
}

/* prefix and " #number" of the build ref obj of ev's data (its build id when the view did not
 * know the number). */
static void add_build(chat_msg *m, const fh_event *ev, const char *prefix, const char *obj)
{
    json_t *n = sub(ev, obj, "number"), *id = sub(ev, obj, "buildid");
    if (json_is_integer(n))
        add_num(m, prefix, (long long)json_integer_value(n));
    else if (json_is_integer(id))
        add_num(m, prefix, (long long)json_integer_value(id));
}

/* "`rev12` by author (owner, owner)" per suspect, at most CHAT_SUSPECTS, then "and N more". */
static void add_suspects(chat_msg *m, const fh_event *ev)
{
    json_t *all = json_object_get(ev->data, "suspects"), *s;
    size_t n = json_array_size(all), i;
    if (n == 0)
        return;
    add(m, SEG_PLAIN, n == 1 ? "; suspect " : "; suspects ");
    json_array_foreach(all, i, s)
    {
        if (i == CHAT_SUSPECTS)
            break;
        const char *author = json_string_value(json_object_get(s, "author"));
        json_t *owners = json_object_get(s, "owners"), *o;
        size_t k, shown = 0;
        if (i > 0)
            add(m, SEG_PLAIN, ", ");
        add_rev(m, json_string_value(json_object_get(s, "revision")));
        if (author && *author) {
            add(m, SEG_PLAIN, " by ");
            add(m, SEG_PLAIN, author);
        }
        json_array_foreach(owners, k, o)
        {
            const char *w = json_string_value(o);
            if (!w || !*w || shown == CHAT_OWNERS || (author && strcmp(w, author) == 0))
                continue;
            add(m, SEG_PLAIN, shown++ ? ", " : " (");
            add(m, SEG_PLAIN, w);
        }
        if (shown)
            add(m, SEG_PLAIN, ")");
    }
    if (n > CHAT_SUSPECTS) {
        add_num(m, " and ", (long long)(n - CHAT_SUSPECTS));
        add(m, SEG_PLAIN, " more");
    }
}

/* "1h", "15m", "90s": a threshold as people say it. */
static void add_duration(chat_msg *m, long long s)
{
    if (m->nnum >= MAX_NUMS)
        return;
    const char *unit = s % 3600 == 0 ? "h" : s % 60 == 0 ? "m" : "s";
    long long v = s % 3600 == 0 ? s / 3600 : s % 60 == 0 ? s / 60 : s;
    snprintf(m->num[m->nnum], sizeof(m->num[0]), "%lld%s", v, unit);
    add(m, SEG_BOLD, m->num[m->nnum++]);
}

/* The derived events (docs/events.md, "Derived events"); 0 when ev is not one. */
static int compose_derived(chat_msg *m, const fh_event *ev)
{
    const char *builder = str(ev, "builder");
    long long n;
    switch ((int)ev->type) {
    case FH_EV_BUILDER_BROKEN:
        add(m, SEG_BOLD, builder);
        add(m, SEG_PLAIN, " broke");
        add_where(m, ev, "owner");
        add_build(m, ev, ": build #", "build");
        add_suspects(m, ev);
        return 1;
    case FH_EV_BUILDER_FIXED:
        add(m, SEG_BOLD, builder);
        add(m, SEG_PLAIN, " fixed");
        add_where(m, ev, "owner");
        add_build(m, ev, " by build #", "build");
        add_build(m, ev, ", broken since build #", "broken_since");
        return 1;
    case FH_EV_LKGR_ADVANCED:
        add(m, SEG_PLAIN, "last green of ");
        add(m, SEG_BOLD, str(ev, "branch"));
        add(m, SEG_PLAIN, " advanced");
        if (str(ev, "old_revision")) {
            add(m, SEG_PLAIN, " from ");
            add_rev(m, str(ev, "old_revision"));
        }
        add(m, SEG_PLAIN, " to ");
        add_rev(m, str(ev, "new_revision"));
        return 1;
    case FH_EV_REQUEST_STALE:
        add(m, SEG_BOLD, builder);
        add_num(m, " request ", ev->buildrequestid);
        add(m, SEG_PLAIN, " waiting over ");
        if (fh_event_int(ev, "threshold_s", &n) == 0)
            add_duration(m, n);
        add_where(m, ev, "owner");
        return 1;
    case FH_EV_TEST_FLAKY:
        if (str(ev, "test")) {
            add(m, SEG_PLAIN, "test ");
            add(m, SEG_CODE, str(ev, "test"));
            add(m, SEG_PLAIN, " flaky on ");
        } else {
            add(m, SEG_PLAIN, "flaky: ");
        }
        add(m, SEG_BOLD, builder);
        add_where(m, ev, "owner");
        add_build(m, ev, ": passed in build #", "passed");
        add_build(m, ev, ", failed in build #", "failed");
        return 1;
    default:
        return 0;
    }
}

/* Fills m with the message for ev. */
static void compose(chat_msg *m, const fh_event *ev)
{
    long long n;
    const char *builder = str(ev, "builder");
    memset(m, 0, sizeof(*m));
    m->link = link_of(ev, "url");
    m->link_label = "build";
    if (compose_derived(m, ev))
        goto done;
    switch ((int)ev->type) {
    case FH_EV_BUILD_FINISHED:
    case FH_EV_BUILD_STARTED:
        add(m, SEG_BOLD, builder);
        if (fh_event_int(ev, "number", &n) == 0)
            add_num(m, " #", n);
        if (ev->type == FH_EV_BUILD_STARTED) {
            add(m, SEG_PLAIN, " started");
        } else {
            add(m, SEG_PLAIN, " ");
            add(m, SEG_BOLD, results_text(ev));
        }
        add_where(m, ev, "owner");
        if (ev->type == FH_EV_BUILD_STARTED && str(ev, "worker")) {
            add(m, SEG_PLAIN, " on worker ");
            add(m, SEG_PLAIN, str(ev, "worker"));
        } else if (ev->type == FH_EV_BUILD_FINISHED && str(ev, "state_string")) {
            add(m, SEG_PLAIN, ": ");
            add(m, SEG_PLAIN, str(ev, "state_string"));
        }
        break;
    case FH_EV_BUILDREQUEST_NEW:
    case FH_EV_BUILDREQUEST_COMPLETE:
        add(m, SEG_BOLD, builder);
        add_num(m, " request ", ev->buildrequestid);
        if (ev->type == FH_EV_BUILDREQUEST_NEW) {
            add(m, SEG_PLAIN, " queued");
        } else {
            add(m, SEG_PLAIN, " complete: ");
            add(m, SEG_BOLD, results_text(ev));
        }
        add_where(m, ev, "owner");
        break;
    case FH_EV_STEP_FINISHED:
        add(m, SEG_BOLD, builder);
        if (fh_event_int(ev, "buildid", &n) == 0)
            add_num(m, " build ", n);
        add(m, SEG_PLAIN, " step ");
        add(m, SEG_CODE, str(ev, "name"));
        add(m, SEG_PLAIN, " ");
        add(m, SEG_BOLD, results_text(ev));
        if (str(ev, "state_string")) {
            add(m, SEG_PLAIN, ": ");
            add(m, SEG_PLAIN, str(ev, "state_string"));
        }
        break;
    case FH_EV_CHANGE_NEW:
        add(m, SEG_PLAIN, "change");
        if (fh_event_int(ev, "changeid", &n) == 0)
            add_num(m, " ", n);
        add_where(m, ev, "author");
        if (str(ev, "comments")) {
            add(m, SEG_PLAIN, ": ");
            add(m, SEG_PLAIN, str(ev, "comments"));
        }
        m->link = link_of(ev, "revlink");
        m->link_label = "change";
        break;
    case FH_EV_WORKER_CONNECTED:
    case FH_EV_WORKER_DISCONNECTED:
        add(m, SEG_PLAIN, "worker ");
        add(m, SEG_BOLD, str(ev, "name"));
        add(m, SEG_PLAIN,
            ev->type == FH_EV_WORKER_CONNECTED ? " connected to " : " disconnected from ");
        add(m, SEG_PLAIN, ev->master);
        break;
    case FH_EV_MASTER_STARTED:
    case FH_EV_MASTER_STOPPED:
        add(m, SEG_PLAIN, "master ");
        add(m, SEG_BOLD, ev->master);
        add(m, SEG_PLAIN, ev->type == FH_EV_MASTER_STARTED ? " started" : " stopped");
        break;
    default: /* a type this code does not know: its name and the usual context */
        add(m, SEG_BOLD, type_name(ev));
        if (builder) {
            add(m, SEG_PLAIN, " on ");
            add(m, SEG_BOLD, builder);
        }
        add_where(m, ev, "owner");
        if (str(ev, "state_string")) {
            add(m, SEG_PLAIN, ": ");
            add(m, SEG_PLAIN, str(ev, "state_string"));
        }
        break;
    }
done:
    if (m->nseg == 0)
        add(m, SEG_BOLD, type_name(ev));
}

/* Appends s (n bytes), each byte through the table esc (NULL: as is). */
static int escape(fh_buf *out, const char *s, size_t n, const char *(*esc)(char c))
{
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        const char *e = esc(s[i]);
        if (!e)
            continue;
        if (fh_buf_append(out, s + from, i - from) || fh_buf_append(out, e, strlen(e)))
            return -1;
        from = i + 1;
    }
    return fh_buf_append(out, s + from, n - from);
}

static const char *esc_slack(char c)
{
    return c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;" : NULL;
}

static const char *esc_slack_url(char c)
{
    return c == '|' ? "%7C" : c == ' ' ? "%20" : esc_slack(c);
}

static const char *esc_html(char c)
{
    switch (c) {
    case '&':
        return "&amp;";
    case '<':
        return "&lt;";
    case '>':
        return "&gt;";
    case '"':
        return "&quot;";
    case '\'':
        return "&#39;";
    default:
        return NULL;
    }
}

static const char *esc_none(char c)
{
    (void)c;
    return NULL;
}

int fh_chat_escape_slack(fh_buf *out, const char *s, size_t n)
{
    return escape(out, s, n, esc_slack);
}

int fh_chat_escape_html(fh_buf *out, const char *s, size_t n)
{
    return escape(out, s, n, esc_html);
}

/* The message as text: mrkdwn (Slack), HTML (Matrix formatted_body) or plain (Matrix body). */
enum flavour { FL_MRKDWN, FL_HTML, FL_PLAIN };

static int write_text(const chat_msg *m, enum flavour fl, fh_buf *out)
{
    static const char *const open[3][3] = {{"", "*", "`"}, {"", "<b>", "<code>"}, {"", "", ""}};
    static const char *const close[3][3] = {{"", "*", "`"}, {"", "</b>", "</code>"}, {"", "", ""}};
    const char *(*esc)(char) = fl == FL_MRKDWN ? esc_slack : fl == FL_HTML ? esc_html : esc_none;
    int rc = 0;
    for (int i = 0; i < m->nseg && !rc; i++) {
        const char *o = open[fl][m->seg[i].style], *c = close[fl][m->seg[i].style];
        rc = fh_buf_append(out, o, strlen(o)) || escape(out, m->seg[i].s, m->seg[i].n, esc) ||
             fh_buf_append(out, c, strlen(c));
    }
    if (rc || !m->link)
        return rc;
    size_t ln = strlen(m->link);
    switch (fl) {
    case FL_MRKDWN:
        return fh_buf_append(out, " <", 2) || escape(out, m->link, ln, esc_slack_url) ||
               fh_buf_printf(out, "|%s>", m->link_label);
    case FL_HTML:
        return fh_buf_append(out, " <a href=\"", 10) || escape(out, m->link, ln, esc_html) ||
               fh_buf_printf(out, "\">%s</a>", m->link_label);
    default:
        return fh_buf_append(out, " ", 1) || fh_buf_append(out, m->link, ln);
    }
}

/* Appends the text of m in flavour fl as one JSON string. */
static int json_text(const chat_msg *m, enum flavour fl, fh_buf *out)
{
    fh_buf t;
    fh_buf_init(&t, out->max);
    int rc = write_text(m, fl, &t) || fh_buf_json_strn(out, t.data ? t.data : "", t.len);
    fh_buf_free(&t);
    return rc;
}

fh_err fh_chat_render(fh_chat_kind k, const fh_event *ev, fh_buf *out)
{
    chat_msg m;
    if (!fh_chat_wanted(ev))
        return FH_ERR_INVAL;
    compose(&m, ev);
    int rc;
    if (k == FH_CHAT_SLACK)
        rc = fh_buf_printf(out, "{\"text\":") || json_text(&m, FL_MRKDWN, out) ||
             fh_buf_printf(out, ",\"blocks\":[{\"type\":\"section\",\"text\":{\"type\":"
                                "\"mrkdwn\",\"text\":") ||
             json_text(&m, FL_MRKDWN, out) || fh_buf_printf(out, "}}]}");
    else
        rc = fh_buf_printf(out, "{\"msgtype\":\"m.text\",\"body\":") ||
             json_text(&m, FL_PLAIN, out) ||
             fh_buf_printf(out, ",\"format\":\"org.matrix.custom.html\",\"formatted_body\":") ||
             json_text(&m, FL_HTML, out) || fh_buf_printf(out, "}");
    return rc ? FH_ERR_TOOBIG : FH_OK;
}
