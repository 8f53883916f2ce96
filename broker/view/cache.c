/* view/cache: the answer cache (lib/fh_acache) keyed by the view's version, with its
 * metrics. Any thread. */
#include "internal.h"

/* ---- the answer cache ------------------------------------------------------------------- */

enum view_cache_result view_cache_get(fh_view *v, const char *key, fh_buf *out, view_asof *asof,
                                      unsigned long long *hash)
{
    enum view_cache_result res = (enum view_cache_result)fh_acache_get(
        v->cache, key, atomic_load(&v->version), fh_now_ms(), out, asof, hash);
    fh_metric_add(res == VIEW_CACHE_HIT     ? v->m_hits
                  : res == VIEW_CACHE_STALE ? v->m_stale
                                            : v->m_misses,
                  1);
    return res;
}

void view_cache_put(fh_view *v, const char *key, const char *body, size_t len,
                    unsigned long long hash, const view_asof *asof, int ttl_ms)
{
    fh_acache_put(v->cache, key, body, len, hash, asof->version, asof,
                  ttl_ms > 0 ? fh_now_ms() + ttl_ms : 0);
}

void view_cache_abandon(fh_view *v, const char *key)
{
    fh_acache_abandon(v->cache, key);
}

size_t view_cache_bytes(fh_view *v)
{
    return v && v->cache ? fh_acache_bytes(v->cache) : 0;
}
