"""Puts N pending build requests into a stopped Buildbot master's database (SQL into its own
schema, as its data layer would write them): one sourcestamp, buildset and buildrequest each,
spread over the builders the master registered on its first start, none claimed.

    python load.py MASTER_DIR N
"""
import hashlib
import sys
import time

import sqlalchemy as sa

master_dir, n = sys.argv[1], int(sys.argv[2])
engine = sa.create_engine("sqlite:///%s/state.sqlite" % master_dir)
meta = sa.MetaData()
meta.reflect(engine)
T = meta.tables
now = int(time.time())
with engine.begin() as con:
    builders = dict(con.execute(sa.select(T["builders"].c.name, T["builders"].c.id)).all())
    if len(builders) < 40:
        sys.exit("the master registered %d builders, want 40" % len(builders))
    ss, bs, bss, br = [], [], [], []
    for i in range(n):
        sid = i + 1
        rev = "%040x" % (i + 1)
        ss.append({"id": sid, "branch": "main", "revision": rev, "patchid": None,
                   "repository": "https://git.example.org/queue.git", "codebase": "",
                   "project": "queue", "created_at": now - 3600 + i // 3,
                   "ss_hash": hashlib.sha1(("main\0%s\0queue\0" % rev).encode()).hexdigest()})
        bs.append({"id": sid, "external_idstring": None, "reason": "bench",
                   "submitted_at": now - 3600 + i // 3, "complete": 0, "complete_at": None,
                   "results": -1, "parent_buildid": None, "parent_relationship": None,
                   "rebuilt_buildid": None})
        bss.append({"id": sid, "buildsetid": sid, "sourcestampid": sid})
        br.append({"id": sid, "buildsetid": sid, "builderid": builders["queue-builder-%02d" % (i % 40)],
                   "priority": 0, "complete": 0, "results": -1, "submitted_at": now - 3600 + i // 3,
                   "complete_at": None, "waited_for": 0})
    for table, rows in (("sourcestamps", ss), ("buildsets", bs), ("buildset_sourcestamps", bss),
                        ("buildrequests", br)):
        con.execute(T[table].insert(), rows)
print("loaded %d pending build requests" % n)
