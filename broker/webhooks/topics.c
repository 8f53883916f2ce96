/* webhooks/topics.c: the topics the webhook consumer reads (the events topic, and the derived
 * topic when the view derives events) and the partition slots that number their partitions in
 * one space (internal.h, DERIVED_SLOT0). */
#include "internal.h"

#include <string.h>

int wh_slot(const fh_webhooks *w, const char *topic, int32_t partition)
{
    if (partition < 0 || partition >= DERIVED_SLOT0 || !topic)
        return -1;
    if (strcmp(topic, w->cfg.topic) == 0)
        return partition;
    if (w->cfg.derived_topic && strcmp(topic, w->cfg.derived_topic) == 0)
        return DERIVED_SLOT0 + partition;
    return -1;
}

const char *wh_slot_topic(const fh_webhooks *w, int slot)
{
    return slot >= DERIVED_SLOT0 && w->cfg.derived_topic ? w->cfg.derived_topic : w->cfg.topic;
}

int32_t wh_slot_partition(int slot)
{
    return slot >= DERIVED_SLOT0 ? slot - DERIVED_SLOT0 : slot;
}

int wh_topics(const fh_webhooks *w, const char *topics[2])
{
    topics[0] = w->cfg.topic;
    topics[1] = w->cfg.derived_topic;
    return w->cfg.derived_topic ? 2 : 1;
}
