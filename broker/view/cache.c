/* view/cache: the answer cache (lib/fh_acache) keyed by the view's version, with its
 * metrics. Any thread. */
#include "internal.h"

/* ---- the answer cache ------------------------------------------------------------------- */

enum view_cache_result view_cache_get(const char *key, fh_buf *out, view_asof *asof,
                                      unsigned long long *hash)
{
    enum view_cache_result res = (enum view_cache_result)fh_acache_get(
        view_g.cache, key, atomic_load(&view_g.version), fh_now_ms(), out, asof, hash);
    fh_metric_add(res == VIEW_CACHE_HIT     ? view_g.m_hits
                  : res == VIEW_CACHE_STALE ? view_g.m_stale
                                            : view_g.m_misses,
                  1);
    return res;
}

void view_cache_put(const char *key, const char *body, size_t len, unsigned long long hash,
                    const view_asof *asof, int ttl_ms)
{
    fh_acache_put(view_g.cache, key, body, len, hash, asof->version, asof,
                  ttl_ms > 0 ? fh_now_ms() + ttl_ms : 0);
}

void view_cache_abandon(const char *key)
{
    fh_acache_abandon(view_g.cache, key);
}
