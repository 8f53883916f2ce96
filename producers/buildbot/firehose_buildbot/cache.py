"""Bounded caches. Every cache here has a hard cap and evicts the least recently used entry
(the Buildbot memory ticket in seeds/: caches that grow with history end in swap)."""

from collections import OrderedDict


class LRU:
    """A dict capped at `cap` entries, least recently used evicted first.

    get() counts a hit or a miss (a miss is what costs the master a data API query);
    peek() counts nothing.  evictions counts entries pushed out by the cap."""

    __slots__ = ("name", "cap", "_d", "hits", "misses", "evictions")

    def __init__(self, name, cap):
        if cap < 1:
            raise ValueError("%s: cache size must be >= 1" % name)
        self.name = name
        self.cap = cap
        self._d = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, key):
        v = self._d.get(key)
        if v is None:
            self.misses += 1
            return None
        self.hits += 1
        self._d.move_to_end(key)
        return v

    def peek(self, key):
        return self._d.get(key)

    def put(self, key, value):
        d = self._d
        if key in d:
            d.move_to_end(key)
        d[key] = value
        while len(d) > self.cap:
            d.popitem(last=False)
            self.evictions += 1
        return value

    def pop(self, key, default=None):
        return self._d.pop(key, default)

    def values(self):
        return list(self._d.values())

    def __contains__(self, key):
        return key in self._d

    def __len__(self):
        return len(self._d)

    def stats(self):
        return {"size": len(self._d), "cap": self.cap, "hits": self.hits, "misses": self.misses,
                "evictions": self.evictions}
