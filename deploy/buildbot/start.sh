#!/bin/sh
# The demo master and its one worker in one container: create them on first start, start the
# worker in the background, run the master in the foreground, and send a change every minute so
# builds keep flowing.
set -e
[ -f /srv/master/buildbot.tac ] || buildbot create-master -q --db sqlite:///state.sqlite /srv/master
[ -d /srv/worker ] || buildbot-worker create-worker -q /srv/worker 127.0.0.1:9989 w1 w1pass
buildbot-worker start /srv/worker
(
    while sleep 60; do
        buildbot sendchange --master 127.0.0.1:9989 --auth change:changepw --who "demo <demo@example.org>" \
            --branch trunk --revision "$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
            --repository https://git.example.org/demo.git --project demo --vc git --comments "demo change" \
            demo.c || true
    done
) &
exec buildbot start --nodaemon /srv/master
