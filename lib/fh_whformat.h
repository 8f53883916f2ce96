/* fh_whformat: the bodies a webhook delivery carries, per endpoint format (docs/webhooks.md):
 *   firehose     {"type":..., "timestamp":..., "data": <the CloudEvent>}   application/json
 *   cloudevents  the CloudEvent itself (structured mode)          application/cloudevents+json
 *   cdevents     CDEvents v0.4.1 for build and step events        application/json
 *   slack        a short message for a Slack incoming webhook     application/json
 *   matrix       a short m.text room message (Matrix)             application/json
 * One firehose event becomes one body, except in cdevents where a build event is both a CDEvents
 * build and a pipelineRun (two bodies, two deliveries) and events without a CDEvents counterpart
 * become none; slack and matrix (lib/fh_whchat) skip the types not worth a message. Rendering is
 * deterministic: the same event always gives the same bytes. */
#ifndef FH_WHFORMAT_H
#define FH_WHFORMAT_H

#include "fh_error.h"
#include "fh_event.h"
#include "fh_util.h"

typedef enum fh_wh_format {
    FH_WH_FIREHOSE = 0,
    FH_WH_CLOUDEVENTS,
    FH_WH_CDEVENTS,
    FH_WH_SLACK,
    FH_WH_MATRIX,
    FH_WH__COUNT
} fh_wh_format;

#define FH_WH_MAX_BODIES 2
#define FH_CDEVENTS_SPEC "0.4.1"

const char *fh_wh_format_name(int f);
/* Returns the format, or -1 for an unknown name. */
int fh_wh_format_parse(const char *name);
const char *fh_wh_format_content_type(int f);

/* How many bodies ev becomes in format f (0 to FH_WH_MAX_BODIES). */
int fh_wh_body_count(int f, const fh_event *ev);

/* Appends body i (0 .. count-1) of ev in format f to out. *variant (static) names the body
 * within the event ("" when there is one; "build", "pipelinerun", "taskrun" in cdevents): it
 * goes into the delivery's id so each body has a stable webhook-id of its own. */
fh_err fh_wh_render(int f, const fh_event *ev, int i, fh_buf *out, const char **variant);

/* The CDEvents type body i of ev maps to ("dev.cdevents.pipelinerun.finished.0.2.0"), NULL when
 * none. */
const char *fh_cdevents_type(const fh_event *ev, int i);

#endif
