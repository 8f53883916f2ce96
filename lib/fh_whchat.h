/* fh_whchat: the webhook formats people read (docs/webhooks.md, "Chat formats"): one short line
 * per event for a Slack-compatible incoming webhook or a Matrix-compatible room message.
 *   slack   {"text": mrkdwn, "blocks": [{"type": "section", "text": {"type": "mrkdwn", ...}}]}
 *   matrix  {"msgtype": "m.text", "body": plain, "format": "org.matrix.custom.html",
 *            "formatted_body": html}
 * Text from events is escaped for where it goes: &, < and > become entities in Slack mrkdwn
 * (Slack's own rule; a link's URL also has | and spaces percent-encoded), HTML entities (also
 * " and ') in Matrix's formatted_body, and JSON escaping around both. Long free text (commit
 * messages, state strings) is cut at a character boundary. Rendering is deterministic. */
#ifndef FH_WHCHAT_H
#define FH_WHCHAT_H

#include "fh_error.h"
#include "fh_event.h"
#include "fh_util.h"

typedef enum fh_chat_kind { FH_CHAT_SLACK = 0, FH_CHAT_MATRIX } fh_chat_kind;

/* Longest piece of free text (bytes) a message quotes from an event before cutting it. */
#define FH_CHAT_TEXT_MAX 200

/* 1 when ev is worth a message; 0 for the types nobody reads in a room (build.updated,
 * buildrequest.claimed and .unclaimed, step.started, log.*, property.set). A type this code
 * does not know (a newer producer's, or a derived one) is worth a generic one-line message. */
int fh_chat_wanted(const fh_event *ev);

/* Appends the body of kind k for ev to out. FH_ERR_TOOBIG at out's cap, FH_ERR_INVAL for an
 * event fh_chat_wanted refuses. */
fh_err fh_chat_render(fh_chat_kind k, const fh_event *ev, fh_buf *out);

/* The escapers, for tests: append s (n bytes) escaped for Slack mrkdwn text, or for HTML.
 * Return 0, or -1 at out's cap. */
int fh_chat_escape_slack(fh_buf *out, const char *s, size_t n);
int fh_chat_escape_html(fh_buf *out, const char *s, size_t n);

#endif
