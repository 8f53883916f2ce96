"""firehose for Buildbot: a master service that emits the firehose v1 event contract to Kafka.

In master.cfg::

    from firehose_buildbot import FirehoseService
    c['services'] = [FirehoseService(brokers="kafka-1:9092,kafka-2:9092", master_name="master-1")]

See docs/buildbot.md for every option, what is emitted for what, and the drop policy.
"""

from firehose_buildbot.service import FirehoseService

__all__ = ["FirehoseService"]
__version__ = "0.1.0"
